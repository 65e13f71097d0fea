"""Checks for the ids and names callers hand the driver.

Pure functions. An id that is empty, longer than 128 characters or holds control characters
is malformed: INVALID_ARGUMENT. Any other id that is not shaped like an ECS id (csi-sanity
sends ``fake-vol-id-...``; a path such as ``../x`` is one too) names nothing: the caller's
NOT_FOUND, answered here without an ECS call, a log line of it or a path built from it. The
idempotent calls (DeleteVolume, DeleteSnapshot, the Unpublish and Unstage calls) ask
``is_disk_id`` and friends instead and answer OK, as the CSI spec asks of a resource that
does not exist.
"""

from __future__ import annotations

import re
import unicodedata

from csi_disk.errors import InvalidArgument, NotFound
from csi_disk.quoting import quote

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


def check_id(value: str, field: str) -> str:
    """``value`` unless it is malformed (empty, too long, control characters):
    INVALID_ARGUMENT naming ``field``. Says nothing about whether it can name anything."""
    if not value:
        raise InvalidArgument(f"{field} is required")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(f"{field} is longer than {MAX_ID_LENGTH} characters")
    if has_control_chars(value):
        raise InvalidArgument(f"{field} {quote(value)} contains control characters")
    return value


def is_disk_id(value: str) -> bool:
    """Whether ``value`` could name an ECS disk (and so a volume of this driver)."""
    return _DISK_ID.fullmatch(value) is not None


def is_snapshot_id(value: str) -> bool:
    return _SNAPSHOT_ID.fullmatch(value) is not None


def is_instance_id(value: str) -> bool:
    return _INSTANCE_ID.fullmatch(value) is not None


def validate_volume_id(volume_id: str, field: str = "volume_id") -> str:
    """A volume id that may name a disk: INVALID_ARGUMENT when malformed, NOT_FOUND when
    it cannot be an ECS disk id."""
    check_id(volume_id, field)
    if not is_disk_id(volume_id):
        raise NotFound(f"volume {quote(volume_id)} does not exist: it is not an ECS disk id")
    return volume_id


def validate_snapshot_id(snapshot_id: str, field: str = "snapshot_id") -> str:
    """A snapshot id that may name a snapshot: INVALID_ARGUMENT when malformed, NOT_FOUND
    when it cannot be an ECS snapshot id."""
    check_id(snapshot_id, field)
    if not is_snapshot_id(snapshot_id):
        raise NotFound(
            f"snapshot {quote(snapshot_id)} does not exist: it is not an ECS snapshot id"
        )
    return snapshot_id


def validate_instance_id(instance_id: str, field: str = "node_id") -> str:
    """A CSI node id (an ECS instance id): INVALID_ARGUMENT when malformed, NOT_FOUND when
    it cannot be an ECS instance id."""
    check_id(instance_id, field)
    if not is_instance_id(instance_id):
        raise NotFound(f"node {quote(instance_id)} does not exist: it is not an ECS instance id")
    return instance_id


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
        raise InvalidArgument(f"{field} {quote(name)} contains control characters")
    return name
