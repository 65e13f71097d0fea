"""The filesystems the driver makes and mounts: one list for the controller's capability
checks, the ``csi.storage.k8s.io/fstype`` parameter and the node's mkfs, fsck and grow."""

from __future__ import annotations

from csi_disk.errors import InvalidArgument
from csi_disk.quoting import quote

FS_TYPES = ("ext4", "ext3", "xfs")  # the first is the default
DEFAULT_FS_TYPE = FS_TYPES[0]
EXT_FS_TYPES = ("ext4", "ext3")


def check_fs_type(fs_type: str, field: str = "fs_type") -> str:
    """The filesystem to use ("" means the default); INVALID_ARGUMENT for any other."""
    chosen = (fs_type or DEFAULT_FS_TYPE).lower()
    if chosen not in FS_TYPES:
        raise InvalidArgument(
            f"{field} {quote(fs_type)} is not supported (use one of {', '.join(FS_TYPES)})"
        )
    return chosen


def serves(found: str, wanted: str) -> bool:
    """Whether a filesystem of type ``found`` serves a request for ``wanted``: ext4 mounts
    ext3, so an ext3 disk is used as it is rather than refused."""
    return found == wanted or (found == "ext3" and wanted == "ext4")
