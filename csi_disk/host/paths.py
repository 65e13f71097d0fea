"""Validation of the paths and ids that callers hand the driver.

Pure functions (no file system access), so the controller can use the volume id check too.
Anything that could never be legitimate is INVALID_ARGUMENT before it reaches mount(8) or a
cloud call.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path, PurePosixPath

from csi_disk.errors import InvalidArgument

MAX_VOLUME_ID_LENGTH = 128
# ECS disk ids are "d-" and 20 lowercase letters/digits today; older regions used shorter
# ones, so the length is checked leniently.
_DISK_ID = re.compile(r"d-[a-z0-9]{2,64}")
_WHITESPACE = re.compile(r"\s")


def _has_control_chars(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def validate_volume_id(volume_id: str, field: str = "volume_id") -> str:
    """Return ``volume_id`` when it is shaped like an ECS disk id, else InvalidArgument.

    A well-formed id that names no disk is the caller's NOT_FOUND; this only rejects ids
    that could never name one.
    """
    if not volume_id:
        raise InvalidArgument(f"{field} is required")
    if len(volume_id) > MAX_VOLUME_ID_LENGTH:
        raise InvalidArgument(f"{field} is longer than {MAX_VOLUME_ID_LENGTH} characters")
    if _has_control_chars(volume_id):
        raise InvalidArgument(f"{field} contains control characters")
    if _WHITESPACE.search(volume_id):
        raise InvalidArgument(f"{field} contains whitespace")
    if "/" in volume_id or "\\" in volume_id or ".." in volume_id:
        raise InvalidArgument(f"{field} {volume_id!r} contains a path separator or '..'")
    if _DISK_ID.fullmatch(volume_id) is None:
        raise InvalidArgument(
            f"{field} {volume_id!r} is not an ECS disk id (d- and lowercase letters or digits)"
        )
    return volume_id


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
        raise InvalidArgument(f"{field} {path!r} is not an absolute path")
    if ".." in path.split("/"):
        raise InvalidArgument(f"{field} {path!r} contains a '..' component")
    normalised = PurePosixPath(posixpath.normpath(path))
    base = PurePosixPath(posixpath.normpath(str(kubelet_dir)))
    if normalised == base or not normalised.is_relative_to(base):
        raise InvalidArgument(f"{field} {path!r} is not inside {base}")
    return Path(normalised)
