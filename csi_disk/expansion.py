"""CSI ControllerExpandVolume: grow a disk through ECS ResizeDisk.

An attached disk is resized online (the guest sees the new size without a restart; the
node then grows the filesystem), a detached one offline. Sizes round up to whole GiB, as
ECS sells them.
"""

from __future__ import annotations

import logging

from csi_disk import categories
from csi_disk.categories import GIB
from csi_disk.cloud import port
from csi_disk.csi_pb import csi_pb2
from csi_disk.deadlines import Deadline
from csi_disk.disks import Disks
from csi_disk.errors import InvalidArgument, NotFound, OutOfRange
from csi_disk.volume_ids import check_id, validate_volume_id

log = logging.getLogger(__name__)

RPC = csi_pb2.ControllerServiceCapability.RPC


def target_size_gib(capacity: csi_pb2.CapacityRange) -> int:
    """The whole GiB a capacity range asks for; INVALID_ARGUMENT/OUT_OF_RANGE when it cannot."""
    required = capacity.required_bytes
    limit = capacity.limit_bytes
    if required <= 0:
        raise InvalidArgument("capacity_range.required_bytes must be positive to expand")
    if limit < 0:
        raise InvalidArgument("capacity_range.limit_bytes must not be negative")
    if limit and required > limit:
        raise InvalidArgument(f"required_bytes {required} exceeds limit_bytes {limit}")
    size = categories.bytes_to_gib_ceil(required)
    if limit and size * GIB > limit:
        raise OutOfRange(
            f"{required} bytes round up to {size} GiB, which exceeds limit_bytes {limit}"
        )
    return size


class Expansion:
    """ControllerExpandVolume over the shared disks interface."""

    capabilities = (RPC.EXPAND_VOLUME,)

    def __init__(self, disks: Disks) -> None:
        self._disks = disks

    def expand(
        self, request: csi_pb2.ControllerExpandVolumeRequest, deadline: Deadline
    ) -> csi_pb2.ControllerExpandVolumeResponse:
        check_id(request.volume_id, "volume_id")
        size = target_size_gib(request.capacity_range)
        volume_id = validate_volume_id(request.volume_id)
        block = (
            request.HasField("volume_capability")
            and request.volume_capability.WhichOneof("access_type") == "block"
        )
        disks = self._disks
        with disks.locks.hold(volume_id):
            disk = disks.settle(disks.require(volume_id), deadline)
            if disk is None:
                raise NotFound(f"volume {volume_id} does not exist")
            level = categories.effective_level(disk.category, disk.performance_level)
            largest = categories.max_size_gib(disk.category, level)
            if size > largest:
                raise OutOfRange(
                    f"{disk.category} disks grow to at most {largest} GiB, not {size} GiB"
                )
            if size < disk.size_gib:
                raise OutOfRange(
                    f"volume {volume_id} has {disk.size_gib} GiB; ECS disks cannot shrink to "
                    f"{size} GiB"
                )
            if size > disk.size_gib:
                online = disk.status == port.IN_USE and bool(disk.attachments)
                disks.cloud.resize_disk(volume_id, size, online=online)
                log.info(
                    "ControllerExpandVolume: %s %d -> %d GiB (%s)",
                    volume_id,
                    disk.size_gib,
                    size,
                    "online" if online else "offline",
                )
                grown = disks.wait_for(
                    volume_id, lambda d: d is None or d.size_gib >= size, deadline
                )
                if grown is None:
                    raise NotFound(f"volume {volume_id} disappeared while expanding")
                disk = grown
            return csi_pb2.ControllerExpandVolumeResponse(
                capacity_bytes=disk.size_gib * GIB, node_expansion_required=not block
            )
