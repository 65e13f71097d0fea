"""Mount table reading and mount/bind/unmount.

The kernel's ``/proc/self/mountinfo`` is the source of truth: it shows bind mounts that
share a device and the options each mount really has. Unmounting is never lazy: a lazy
unmount hides a busy mount and lets a disk be detached under a live writer.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from csi_disk.errors import FailedPrecondition
from csi_disk.host.run import CommandFailed, run
from csi_disk.quoting import quote

log = logging.getLogger(__name__)

MOUNTINFO = Path("/proc/self/mountinfo")
MOUNT_TIMEOUT = 120.0

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape(field: str) -> str:
    r"""Undo the kernel's octal escapes (``\040`` space, ``\011`` tab, ``\134`` backslash)."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True)
class Mount:
    """One line of mountinfo."""

    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str
    mount_point: str
    options: tuple[str, ...]
    fstype: str
    source: str
    super_options: tuple[str, ...]
    optional_fields: tuple[str, ...] = ()

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse mountinfo text; malformed lines are skipped with a warning, not fatal."""
    mounts = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            mounts.append(_parse_line(line))
        except (ValueError, IndexError):
            log.warning("skipping unparseable mountinfo line %r", line)
    return mounts


def _parse_line(line: str) -> Mount:
    fields = line.split(" ")
    separator = fields.index("-", 6)
    major, minor = fields[2].split(":")
    after = fields[separator + 1 :]
    return Mount(
        mount_id=int(fields[0]),
        parent_id=int(fields[1]),
        major=int(major),
        minor=int(minor),
        root=unescape(fields[3]),
        mount_point=unescape(fields[4]),
        options=tuple(fields[5].split(",")),
        optional_fields=tuple(fields[6:separator]),
        fstype=unescape(after[0]),
        source=unescape(after[1]),
        super_options=tuple(after[2].split(",")) if len(after) > 2 else (),
    )


def read_mounts(mountinfo: Path = MOUNTINFO) -> list[Mount]:
    return parse_mountinfo(mountinfo.read_text(encoding="utf-8", errors="surrogateescape"))


def _canonical(path: Path | str) -> str:
    return os.path.realpath(os.fspath(path))


def find_mount(path: Path | str, mountinfo: Path = MOUNTINFO) -> Mount | None:
    """The mount whose mount point is exactly ``path`` (the topmost one when stacked)."""
    wanted = _canonical(path)
    found = None
    for entry in read_mounts(mountinfo):
        if entry.mount_point == wanted:
            found = entry
    return found


def is_mount_point(path: Path | str, mountinfo: Path = MOUNTINFO) -> bool:
    return find_mount(path, mountinfo) is not None


def mounts_of_device(device: Path | str, mountinfo: Path = MOUNTINFO) -> list[Mount]:
    """Every mount of ``device``, bind mounts included, matched by device number."""
    try:
        rdev = os.stat(device).st_rdev
    except FileNotFoundError:
        return []
    major, minor = os.major(rdev), os.minor(rdev)
    return [m for m in read_mounts(mountinfo) if (m.major, m.minor) == (major, minor)]


def mount(
    source: Path | str,
    target: Path | str,
    fstype: str,
    options: Sequence[str] = (),
    *,
    timeout: float = MOUNT_TIMEOUT,
) -> None:
    """Mount ``source`` on ``target``; options are the driver's, already checked."""
    argv = ["mount", "-t", fstype]
    if options:
        argv += ["-o", ",".join(options)]
    argv += [os.fspath(source), os.fspath(target)]
    run(argv, timeout=timeout)


def bind_mount(
    source: Path | str,
    target: Path | str,
    read_only: bool = False,
    options: Sequence[str] = (),
    *,
    timeout: float = MOUNT_TIMEOUT,
) -> None:
    """Bind ``source`` onto ``target``, read-only and with ``options`` when asked.

    The kernel ignores ``ro`` and most flags on the bind itself; mount(8) applies them
    with a remount right after, inside the same mount(8) process, so a plugin killed
    mid-call never leaves a writable bind where a read-only one was asked for. If the
    flags did not take, the bind is undone rather than left writable.
    """
    extra = [o for o in options if o not in ("ro", "rw", "bind", "remount")]
    flags = ["ro" if read_only else "rw", *extra]
    argv = ["mount", "--bind", "-o", ",".join(flags), os.fspath(source), os.fspath(target)]
    run(argv, timeout=timeout)
    if read_only:
        placed = find_mount(target)
        if placed is None or not placed.read_only:
            unmount(target, timeout=timeout)
            raise FailedPrecondition(f"could not make the bind mount at {quote(target)} read-only")


_NOT_MOUNTED = ("not mounted", "no mount point specified", "no such file or directory")


def unmount(target: Path | str, *, timeout: float = MOUNT_TIMEOUT) -> None:
    """Unmount ``target`` once; an absent or unmounted target is already done."""
    try:
        run(["umount", os.fspath(target)], timeout=timeout)
    except CommandFailed as exc:
        text = exc.stderr.lower()
        if any(marker in text for marker in _NOT_MOUNTED):
            log.debug("%s was not mounted", quote(target))
            return
        if "busy" in text:
            raise FailedPrecondition(f"{quote(target)} is still in use: {exc.message}") from exc
        raise
