"""Shape checks for the ids and names callers hand the controller.

Pure functions. An id that could never name an ECS resource (path separators, ``..``,
control characters, the wrong alphabet) is INVALID_ARGUMENT before it reaches a log line or
an ECS call; a well-formed id naming nothing is the caller's NOT_FOUND (or OK, for the
idempotent deletes), as the CSI spec asks.
"""

from __future__ import annotations

import re
import unicodedata

from csi_disk.errors import InvalidArgument

MAX_ID_LENGTH = 128
MAX_NAME_BYTES = 128  # the CSI spec's size limit for string fields

# ECS disk ids are "d-" and 20 lowercase letters/digits today; older regions used shorter ones.
_DISK_ID = re.compile(r"d-[a-z0-9]{2,64}")
_SNAPSHOT_ID = re.compile(r"s-[a-z0-9]{1,62}")
_INSTANCE_ID = re.compile(r"i-[a-z0-9]{1,64}")
# Control characters, format characters (bidi overrides, zero-width joiners) and line or
# paragraph separators: each can forge or hide text in a log line.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def has_control_chars(text: str) -> bool:
    """Whether ``text`` holds a character that has no business in an id, name or log line."""
    return any(unicodedata.category(c) in _UNPRINTABLE for c in text)


def _shown(text: str) -> str:
    """``text`` made safe to put in an error message: escaped and cut short."""
    return ascii(text[:64])


def _check_id(value: str, pattern: re.Pattern[str], field: str, what: str) -> str:
    if not value:
        raise InvalidArgument(f"{field} is required")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(f"{field} is longer than {MAX_ID_LENGTH} characters")
    if has_control_chars(value):
        raise InvalidArgument(f"{field} {_shown(value)} contains control characters")
    if "/" in value or "\\" in value or ".." in value:
        raise InvalidArgument(f"{field} {_shown(value)} contains a path separator or '..'")
    if pattern.fullmatch(value) is None:
        raise InvalidArgument(f"{field} {_shown(value)} is not {what}")
    return value


def validate_volume_id(volume_id: str, field: str = "volume_id") -> str:
    """``volume_id`` when it is shaped like an ECS disk id, else INVALID_ARGUMENT."""
    return _check_id(
        volume_id, _DISK_ID, field, "an ECS disk id (d- and lowercase letters or digits)"
    )


def validate_snapshot_id(snapshot_id: str, field: str = "snapshot_id") -> str:
    """``snapshot_id`` when it is shaped like an ECS snapshot id, else INVALID_ARGUMENT."""
    return _check_id(
        snapshot_id, _SNAPSHOT_ID, field, "an ECS snapshot id (s- and lowercase letters or digits)"
    )


def validate_instance_id(instance_id: str, field: str = "node_id") -> str:
    """``instance_id`` when it is shaped like an ECS instance id (the CSI node id)."""
    return _check_id(
        instance_id,
        _INSTANCE_ID,
        field,
        "an ECS instance id (i- and lowercase letters or digits)",
    )


def validate_name(name: str, field: str = "name") -> str:
    """A CSI volume or snapshot name the driver may log, tag and hash into a token.

    Any printable text up to 128 bytes is fine (external-provisioner sends ``pvc-<uuid>``,
    other callers send what they like); control characters would forge log lines and tags.
    """
    if not name:
        raise InvalidArgument(f"{field} is required")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise InvalidArgument(f"{field} is longer than {MAX_NAME_BYTES} bytes")
    if has_control_chars(name):
        raise InvalidArgument(f"{field} {_shown(name)} contains control characters")
    return name
