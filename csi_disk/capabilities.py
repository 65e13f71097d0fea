"""Which volume capabilities the driver serves, decided in one place.

CreateVolume, ValidateVolumeCapabilities and ControllerPublishVolume use ``check`` so the
controller never confirms what the node would refuse later; the node shares the constants.
Pure logic, no host access: filesystems and mount flags are checked against the lists in
``csi_disk.fstypes`` and ``csi_disk.mount_flags``, the ones the node applies before mount(8).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from csi_disk.csi_pb import csi_pb2
from csi_disk.errors import InvalidArgument
from csi_disk.fstypes import check_fs_type
from csi_disk.mount_flags import check_mount_flags
from csi_disk.quoting import quote

AccessMode = csi_pb2.VolumeCapability.AccessMode

# The publish_context keys that carry the disk's serial from ControllerPublish to the node:
# this driver's, and the upstream Go driver's. ControllerPublish writes both, and the node
# reads either, so during a rolling migration each side understands the other.
SERIAL_KEY = "serial"
UPSTREAM_SERIAL_KEY = "serialNumber"

SINGLE_NODE_MODES = frozenset(
    {
        AccessMode.SINGLE_NODE_WRITER,
        AccessMode.SINGLE_NODE_READER_ONLY,
        AccessMode.SINGLE_NODE_SINGLE_WRITER,
        AccessMode.SINGLE_NODE_MULTI_WRITER,
    }
)
MULTI_NODE_MODES = frozenset(
    {
        AccessMode.MULTI_NODE_READER_ONLY,
        AccessMode.MULTI_NODE_SINGLE_WRITER,
        AccessMode.MULTI_NODE_MULTI_WRITER,
    }
)
READ_ONLY_MODES = frozenset({AccessMode.SINGLE_NODE_READER_ONLY, AccessMode.MULTI_NODE_READER_ONLY})


def check(
    cap: csi_pb2.VolumeCapability, *, multi_attach: bool, field: str = "volume_capability"
) -> None:
    """INVALID_ARGUMENT naming what in ``cap`` this driver cannot serve.

    ``multi_attach``: whether the disk can be attached to several instances at once; the
    multi-node modes need it, and a block volume, since two nodes mounting one ext4/xfs
    filesystem corrupt it.
    """
    mode = cap.access_mode.mode
    if mode == AccessMode.UNKNOWN:
        raise InvalidArgument(f"{field}.access_mode is required (it is UNKNOWN)")
    if mode not in SINGLE_NODE_MODES | MULTI_NODE_MODES:
        raise InvalidArgument(f"{field}.access_mode {mode} is not supported")
    kind = cap.WhichOneof("access_type")
    if kind is None:
        raise InvalidArgument(f"{field} needs an access type (mount or block)")
    if kind == "mount":
        check_fs_type(cap.mount.fs_type, f"{field}.mount.fs_type")
        if cap.mount.volume_mount_group:
            raise InvalidArgument(f"{field}.mount.volume_mount_group is not supported")
        check_mount_flags(cap.mount.mount_flags)
    if mode in MULTI_NODE_MODES:
        name = AccessMode.Mode.Name(mode)
        if kind != "block":
            raise InvalidArgument(
                f"access mode {name} is only possible for block volumes: two nodes mounting "
                "one ext4/xfs filesystem corrupt it"
            )
        if not multi_attach:
            raise InvalidArgument(f"access mode {name} needs a multi-attach disk (multiAttach)")


def check_all(caps: Sequence[csi_pb2.VolumeCapability], *, multi_attach: bool) -> None:
    """``check`` every capability; at least one is required."""
    if not caps:
        raise InvalidArgument("volume_capabilities are required")
    for index, cap in enumerate(caps):
        check(cap, multi_attach=multi_attach, field=f"volume_capabilities[{index}]")


def publish_context(serial: str) -> dict[str, str]:
    """What ControllerPublishVolume tells the node: the serial, under both keys."""
    return {SERIAL_KEY: serial, UPSTREAM_SERIAL_KEY: serial}


def published_serial(context: Mapping[str, str]) -> str:
    """The serial ControllerPublishVolume reported ("" when none did); INVALID_ARGUMENT
    when the two keys disagree, since the node could not know which disk to trust."""
    ours = context.get(SERIAL_KEY, "")
    upstream = context.get(UPSTREAM_SERIAL_KEY, "")
    if ours and upstream and ours != upstream:
        raise InvalidArgument(
            f"publish_context {SERIAL_KEY}={quote(ours)} and {UPSTREAM_SERIAL_KEY}="
            f"{quote(upstream)} name different disks"
        )
    return ours or upstream
