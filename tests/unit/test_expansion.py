"""ControllerExpandVolume and ControllerModifyVolume against the in-memory cloud."""

from __future__ import annotations

import pytest

from csi_disk.categories import GIB
from csi_disk.controller import ControllerService
from csi_disk.csi_pb import csi_pb2
from csi_disk.errors import Aborted, InvalidArgument, NotFound, OutOfRange
from tests.fakes import InMemoryCloud, ecs_error
from tests.unit import controller_helpers

RPC = csi_pb2.ControllerServiceCapability.RPC
BLOCK = csi_pb2.VolumeCapability(
    block=csi_pb2.VolumeCapability.BlockVolume(),
    access_mode=csi_pb2.VolumeCapability.AccessMode(mode=1),
)


cloud = controller_helpers.cloud
ctl = controller_helpers.ctl


def expand(
    ctl: ControllerService, volume_id: str, required: int, limit: int = 0, block: bool = False
) -> csi_pb2.ControllerExpandVolumeResponse:
    req = csi_pb2.ControllerExpandVolumeRequest(
        volume_id=volume_id,
        capacity_range=csi_pb2.CapacityRange(required_bytes=required, limit_bytes=limit),
    )
    if block:
        req.volume_capability.CopyFrom(BLOCK)
    return ctl.ControllerExpandVolume(req)


def modify(ctl: ControllerService, volume_id: str, **params: str) -> None:
    ctl.ControllerModifyVolume(
        csi_pb2.ControllerModifyVolumeRequest(volume_id=volume_id, mutable_parameters=params)
    )


def test_capabilities(ctl: ControllerService) -> None:
    resp = ctl.ControllerGetCapabilities(csi_pb2.ControllerGetCapabilitiesRequest())
    assert {RPC.EXPAND_VOLUME, RPC.MODIFY_VOLUME} <= {c.rpc.type for c in resp.capabilities}


def test_expand_rounds_up_online_when_attached(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    attached = cloud.add_disk(size_gib=20, status="In_use", attachments=("i-h1",))
    resp = expand(ctl, attached.id, 30 * GIB + 1)
    assert (resp.capacity_bytes, resp.node_expansion_required) == (31 * GIB, True)
    assert ("resize_disk", (attached.id, 31, True)) in cloud.log
    free = cloud.add_disk(size_gib=20)
    resp = expand(ctl, free.id, 40 * GIB, block=True)
    assert (resp.capacity_bytes, resp.node_expansion_required) == (40 * GIB, False)
    assert ("resize_disk", (free.id, 40, False)) in cloud.log


def test_expand_repeat_is_a_no_op(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    disk = cloud.add_disk(size_gib=20)
    expand(ctl, disk.id, 25 * GIB)
    resp = expand(ctl, disk.id, 25 * GIB)
    assert resp.capacity_bytes == 25 * GIB
    assert cloud.calls["resize_disk"] == 1


def test_expand_errors(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    disk = cloud.add_disk(size_gib=30, category="cloud_ssd", performance_level="")
    with pytest.raises(OutOfRange, match="shrink"):
        expand(ctl, disk.id, 20 * GIB)
    with pytest.raises(OutOfRange, match="32768"):
        expand(ctl, disk.id, 40000 * GIB)
    with pytest.raises(OutOfRange, match="limit_bytes"):
        expand(ctl, disk.id, 40 * GIB + 1, limit=40 * GIB + 2)
    with pytest.raises(InvalidArgument):
        expand(ctl, disk.id, 0)
    with pytest.raises(InvalidArgument):
        expand(ctl, disk.id, 50 * GIB, limit=40 * GIB)
    with pytest.raises(NotFound):
        expand(ctl, "d-missing", 50 * GIB)
    assert cloud.calls["resize_disk"] == 0


def test_modify_level_and_idempotency(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    disk = cloud.add_disk(size_gib=20, performance_level="PL0")
    modify(ctl, disk.id, performanceLevel="PL1")
    assert cloud.disk(disk.id).performance_level == "PL1"
    modify(ctl, disk.id, performanceLevel="PL1")
    assert cloud.calls["modify_disk_spec"] == 1
    assert ("modify_disk_spec", (disk.id, "", "PL1", None, None)) in cloud.log


def test_modify_refuses_what_the_size_cannot_carry(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    disk = cloud.add_disk(size_gib=20, performance_level="PL0")
    with pytest.raises(InvalidArgument, match="461 GiB"):
        modify(ctl, disk.id, performanceLevel="PL2")
    with pytest.raises(InvalidArgument, match="size"):
        modify(ctl, disk.id, size="40")
    with pytest.raises(InvalidArgument, match="PL7"):
        modify(ctl, disk.id, performanceLevel="PL7")
    with pytest.raises(InvalidArgument, match="cloud_essd"):
        modify(ctl, disk.id, type="cloud_ssd", performanceLevel="PL1")
    with pytest.raises(InvalidArgument, match="cloud_auto"):
        modify(ctl, disk.id, provisionedIops="1000")
    with pytest.raises(NotFound):
        modify(ctl, "d-missing", performanceLevel="PL1")
    assert cloud.calls["modify_disk_spec"] == 0


def test_modify_keeps_a_regional_disk_regional(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    regional = cloud.add_disk(zone="", category="cloud_regional_disk_auto", size_gib=40)
    zonal = cloud.add_disk(size_gib=40)
    with pytest.raises(InvalidArgument, match="regional disk stays regional"):
        modify(ctl, regional.id, type="cloud_essd")
    with pytest.raises(InvalidArgument, match="regional disk stays regional"):
        modify(ctl, zonal.id, type="cloud_regional_disk_auto")
    assert cloud.calls["modify_disk_spec"] == 0


def test_modify_ids_that_name_nothing(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    """An id no disk can have is NOT_FOUND without an ECS call; a bad request stays
    INVALID_ARGUMENT whatever its id."""
    with pytest.raises(NotFound, match="not an ECS disk id"):
        modify(ctl, "non-existing-volume-id", performanceLevel="PL1")
    with pytest.raises(InvalidArgument, match="XXX_FakeKey"):
        modify(ctl, "non-existing-volume-id", XXX_FakeKey="XXX_FakeValue")
    with pytest.raises(InvalidArgument, match="volume_id"):
        modify(ctl, "", performanceLevel="PL1")
    with pytest.raises(NotFound, match="not an ECS disk id"):
        expand(ctl, "fake-vol-id", 50 * GIB)
    assert sum(cloud.calls.values()) == 0


def create(ctl: ControllerService, name: str, params: dict[str, str], **mutable: str) -> str:
    request = csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=20 * GIB),
        volume_capabilities=[
            csi_pb2.VolumeCapability(
                mount=csi_pb2.VolumeCapability.MountVolume(),
                access_mode=csi_pb2.VolumeCapability.AccessMode(mode=1),
            )
        ],
        parameters=params,
        mutable_parameters=mutable,
    )
    return ctl.CreateVolume(request).volume.volume_id


def test_create_with_a_volume_attributes_class(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    """The class's keys shape the disk at creation, over the StorageClass's."""
    level = create(ctl, "pvc-vac-level", {"performanceLevel": "PL1"}, performanceLevel="PL0")
    assert (cloud.disk(level).category, cloud.disk(level).performance_level) == (
        "cloud_essd",
        "PL0",
    )
    auto = create(
        ctl,
        "pvc-vac-auto",
        {"type": "cloud_essd"},
        type="cloud_auto",
        provisionedIops="5000",
        burstingEnabled="true",
    )
    disk = cloud.disk(auto)
    assert (disk.category, disk.provisioned_iops, disk.bursting_enabled) == (
        "cloud_auto",
        5000,
        True,
    )
    # Asked again, the same name finds the same disk: the class is part of what was asked.
    assert create(ctl, "pvc-vac-level", {"performanceLevel": "PL1"}, performanceLevel="PL0") == (
        level
    )
    assert cloud.calls["modify_disk_spec"] == 0


def test_create_refuses_a_class_it_cannot_honour(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    with pytest.raises(InvalidArgument, match="XXX_FakeKey"):
        create(ctl, "pvc-fake-key", {}, XXX_FakeKey="XXX_FakeValue")
    with pytest.raises(InvalidArgument, match="cloud_essd"):
        create(ctl, "pvc-ssd-level", {"type": "cloud_ssd"}, performanceLevel="PL1")
    with pytest.raises(InvalidArgument, match="cloud_auto"):
        create(ctl, "pvc-ssd-iops", {"type": "cloud_ssd"}, provisionedIops="1000")
    with pytest.raises(InvalidArgument, match="PL9"):
        create(ctl, "pvc-bad-level", {}, performanceLevel="PL9")
    assert cloud.calls["create_disk"] == 0


def test_modify_category_iops_and_bursting(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    disk = cloud.add_disk(size_gib=40, performance_level="PL1")
    modify(ctl, disk.id, type="cloud_auto", provisionedIops="5000", burstingEnabled="true")
    after = cloud.disk(disk.id)
    assert (after.category, after.provisioned_iops, after.bursting_enabled) == (
        "cloud_auto",
        5000,
        True,
    )


def test_modify_during_cooling_period_is_aborted(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    disk = cloud.add_disk(size_gib=20, performance_level="PL0")
    cloud.fail("modify_disk_spec", ecs_error("DiskInCoolingPeriod", action="ModifyDiskSpec"))
    with pytest.raises(Aborted):
        modify(ctl, disk.id, performanceLevel="PL1")
    modify(ctl, disk.id, performanceLevel="PL1")
    assert cloud.disk(disk.id).performance_level == "PL1"


def test_a_second_change_while_the_first_cools_down_is_aborted(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    cloud.cooling = 1000
    disk = cloud.add_disk(size_gib=500, performance_level="PL0")
    modify(ctl, disk.id, performanceLevel="PL1")
    with pytest.raises(Aborted):
        modify(ctl, disk.id, performanceLevel="PL2")
    assert cloud.disk(disk.id).performance_level == "PL1"
    cloud.end_cooling(disk.id)
    modify(ctl, disk.id, performanceLevel="PL2")
    assert cloud.disk(disk.id).performance_level == "PL2"
