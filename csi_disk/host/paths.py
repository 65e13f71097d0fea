"""Validation of the paths that callers hand the driver (ids: ``csi_disk.volume_ids``).

``validate_target_path`` is pure (no file system access). A path that could never be
legitimate is INVALID_ARGUMENT before it reaches mount(8).

A path that passes the text check can still lead elsewhere: mkdir, mount(8) and open(2)
follow symbolic links, so a link planted in the kubelet directory would put a disk, a
directory or a file anywhere on the host. ``resolve_inside`` checks where a path really
leads, and ``make_dirs_inside``/``create_file_inside`` create what is missing one level
at a time without following links.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
from pathlib import Path, PurePosixPath

from csi_disk.errors import FailedPrecondition, InvalidArgument
from csi_disk.quoting import quote

# Linux's limits: bytes in one path component, and in a whole path with its final NUL.
NAME_MAX = 255
PATH_MAX = 4096


class ImpossiblePath(InvalidArgument):
    """A path no file can have: the kernel refuses a name that long (ENAMETOOLONG). Nothing
    was ever staged or published there, so the calls that undo answer OK for it."""


def _has_control_chars(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def validate_target_path(
    path: str, kubelet_dir: Path | str, field: str = "target_path"
) -> Path:
    """Return ``path`` normalised when it is a safe place below ``kubelet_dir``.

    The check is lexical on purpose: the path may not exist yet, and resolving it would
    follow links the caller controls.
    """
    if not path:
        raise InvalidArgument(f"{field} is required")
    if "\x00" in path or _has_control_chars(path):
        raise InvalidArgument(f"{field} contains control characters")
    if not path.startswith("/"):
        raise InvalidArgument(f"{field} {quote(path)} is not an absolute path")
    if ".." in path.split("/"):
        raise InvalidArgument(f"{field} {quote(path)} contains a '..' component")
    normalised = PurePosixPath(posixpath.normpath(path))
    base = PurePosixPath(posixpath.normpath(str(kubelet_dir)))
    if normalised == base or not normalised.is_relative_to(base):
        raise InvalidArgument(f"{field} {quote(path)} is not inside {base}")
    if len(os.fsencode(path)) >= PATH_MAX:
        raise ImpossiblePath(f"{field} is longer than {PATH_MAX - 1} bytes")
    if any(len(os.fsencode(part)) > NAME_MAX for part in normalised.parts):
        raise ImpossiblePath(
            f"{field} {quote(path)} has a component longer than {NAME_MAX} bytes"
        )
    return Path(normalised)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
DIR_MODE = 0o750
FILE_MODE = 0o640


def _real_prefix(path: Path) -> Path:
    """``path`` with its deepest existing ancestor resolved and the missing rest appended.

    A dangling link counts as existing, so its destination is what gets checked.
    """
    missing: list[str] = []
    current = path
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current.name)
        current = current.parent
    return Path(os.path.realpath(current)).joinpath(*reversed(missing))


def _check_below(real: Path, base: Path, path: Path, kubelet_dir: Path | str, field: str) -> None:
    if real == base or not real.is_relative_to(base):
        raise InvalidArgument(
            f"{field} {quote(path)} leads outside {kubelet_dir} through a symbolic link"
        )


def resolve_inside(
    path: Path | str,
    kubelet_dir: Path | str,
    field: str = "target_path",
    *,
    leaf_link_ok: bool = False,
) -> Path:
    """Where ``path`` really is, when that is below the real ``kubelet_dir``.

    The parent is resolved through any links; ``path`` itself must not be a link (the
    driver never makes one there) unless ``leaf_link_ok``, in which case the link itself
    is returned, not followed, for a caller that only removes it.
    """
    path = Path(path)
    base = Path(os.path.realpath(kubelet_dir))
    real = _real_prefix(path.parent) / path.name
    _check_below(real, base, path, kubelet_dir, field)
    if os.path.islink(real) and not leaf_link_ok:
        raise InvalidArgument(f"{field} {quote(path)} is a symbolic link")
    return real


def _open_dir_inside(path: Path, kubelet_dir: Path | str, field: str) -> int:
    """An fd for directory ``path``, creating missing levels without following links.

    The deepest existing level is opened by its resolved name and checked again through
    the fd; each missing level is made and opened relative to its parent with
    O_NOFOLLOW, so a link swapped in meanwhile fails instead of being followed.
    """
    real = resolve_inside(path, kubelet_dir, field)
    missing: list[str] = []
    existing = real
    while not os.path.lexists(existing):
        missing.append(existing.name)
        existing = existing.parent
    try:
        fd = os.open(existing, _DIR_FLAGS)
    except OSError as err:
        raise _refusal(err, existing, path, field) from err
    try:
        opened = os.readlink(f"/proc/self/fd/{fd}")
        if opened != str(existing):  # a level was swapped for a link after resolving
            raise InvalidArgument(f"{field} {quote(path)} changed while being checked")
        for name in reversed(missing):
            # Made by someone else meanwhile is fine: it is opened without following below.
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, DIR_MODE, dir_fd=fd)
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as err:
                raise _refusal(err, existing / name, path, field) from err
            os.close(fd)
            fd = child
            existing = existing / name
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refusal(err: OSError, where: Path, path: Path, field: str) -> Exception:
    if err.errno == errno.ELOOP:
        return InvalidArgument(f"{field} {quote(path)}: {quote(where)} is a symbolic link")
    if err.errno == errno.ENOTDIR:
        return FailedPrecondition(f"{field} {quote(path)}: {quote(where)} is not a directory")
    return err


def make_dirs_inside(
    path: Path | str, kubelet_dir: Path | str, field: str = "target_path"
) -> None:
    """``mkdir -p path`` that never follows a link and never leaves ``kubelet_dir``."""
    os.close(_open_dir_inside(Path(path), kubelet_dir, field))


def create_file_inside(
    path: Path | str, kubelet_dir: Path | str, field: str = "target_path"
) -> None:
    """Create an empty regular file at ``path`` (parents too) to bind a device onto.

    An existing regular file is fine (a repeated call); a link, directory or device there
    is refused rather than opened.
    """
    path = Path(path)
    parent = _open_dir_inside(path.parent, kubelet_dir, field)
    try:
        try:
            fd = os.open(
                path.name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                FILE_MODE,
                dir_fd=parent,
            )
        except FileExistsError:
            st = os.stat(path.name, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise InvalidArgument(f"{field} {quote(path)} is a symbolic link") from None
            if not stat.S_ISREG(st.st_mode):
                raise FailedPrecondition(
                    f"{field} {quote(path)} exists and is not a regular file"
                ) from None
            return
        os.close(fd)
    finally:
        os.close(parent)
