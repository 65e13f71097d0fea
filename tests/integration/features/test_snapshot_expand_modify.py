"""Snapshots, restores, online expansion and spec changes end to end: controller handlers
over the real EcsCloud and the emulator, node service on real loop devices."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from csi_disk.categories import GIB
from csi_disk.cloud.ecs import EcsCloud
from csi_disk.cloud.waiter import DiskWaiter
from csi_disk.config import Config
from csi_disk.controller import ControllerService
from csi_disk.csi_pb import csi_pb2
from csi_disk.errors import DriverError
from csi_disk.node import NodeService
from csi_disk_emulator.process import EmulatorInfo, EmulatorInstance

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

Cap = csi_pb2.VolumeCapability
MakeNode = Callable[[EmulatorInstance], NodeService]


def mount_cap(fs: str) -> Any:
    return Cap(mount=Cap.MountVolume(fs_type=fs), access_mode=Cap.AccessMode(mode=1))


@pytest.fixture
def ctl(cloud: EcsCloud, waiter: DiskWaiter, node_emulator: EmulatorInfo) -> ControllerService:
    config = Config(attach_mode="node", operation_timeout=30.0)
    return ControllerService(config, cloud, waiter, default_zone=node_emulator.zones[0])


@pytest.fixture
def volumes(ctl: ControllerService) -> Iterator[list[str]]:
    """Volume ids to delete at the end (after the test unstaged them)."""
    made: list[str] = []
    yield made
    for volume_id in made:
        ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id))


def code_of(fn: Callable[[], Any]) -> str:
    with pytest.raises(DriverError) as info:
        fn()
    return info.value.code


def create(ctl: ControllerService, fs: str, gib: int, zone: str, **extra: Any) -> csi_pb2.Volume:
    req = csi_pb2.CreateVolumeRequest(
        name=f"pvc-{uuid.uuid4().hex[:10]}",
        capacity_range=csi_pb2.CapacityRange(required_bytes=gib * GIB),
        volume_capabilities=[mount_cap(fs)],
        parameters={"type": "cloud_auto", "zoneId": zone},
    )
    snapshot_id = extra.pop("snapshot_id", "")
    if snapshot_id:
        req.volume_content_source.snapshot.snapshot_id = snapshot_id
    return ctl.CreateVolume(req).volume


def stage(node: NodeService, volume_id: str, staging: Path, fs: str) -> None:
    node.NodeStageVolume(
        csi_pb2.NodeStageVolumeRequest(
            volume_id=volume_id, staging_target_path=str(staging), volume_capability=mount_cap(fs)
        ),
        None,
    )


def unstage(node: NodeService, volume_id: str, staging: Path) -> None:
    node.NodeUnstageVolume(
        csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=str(staging)),
        None,
    )


def expand(
    ctl: ControllerService, node: NodeService, volume_id: str, staging: Path, gib: int, fs: str
) -> int:
    """Controller then node expansion, as external-resizer and the kubelet do."""
    capacity = csi_pb2.CapacityRange(required_bytes=gib * GIB)
    resp = ctl.ControllerExpandVolume(
        csi_pb2.ControllerExpandVolumeRequest(
            volume_id=volume_id, capacity_range=capacity, volume_capability=mount_cap(fs)
        )
    )
    assert resp.capacity_bytes == gib * GIB and resp.node_expansion_required
    grown = node.NodeExpandVolume(
        csi_pb2.NodeExpandVolumeRequest(
            volume_id=volume_id,
            volume_path=str(staging),
            staging_target_path=str(staging),
            capacity_range=capacity,
            volume_capability=mount_cap(fs),
        ),
        None,
    )
    return int(grown.capacity_bytes)


def fs_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def zone_pair(info: EmulatorInfo) -> tuple[EmulatorInstance, EmulatorInstance]:
    first = info.instances[0]
    second = next(i for i in info.instances[1:] if i.zone == first.zone)
    return first, second


def test_snapshot_restore_elsewhere_then_expand_xfs_online(
    ctl: ControllerService,
    make_node: MakeNode,
    kubelet: Path,
    volumes: list[str],
    node_emulator: EmulatorInfo,
) -> None:
    first, second = zone_pair(node_emulator)
    node_a, node_b = make_node(first), make_node(second)
    source = create(ctl, "xfs", 1, first.zone)
    volumes.append(source.volume_id)
    staging_a = kubelet / "a"
    stage(node_a, source.volume_id, staging_a, "xfs")
    (staging_a / "data").mkdir()
    payload = os.urandom(256 * 1024)
    (staging_a / "data" / "blob").write_bytes(payload)
    os.sync()  # an application-consistent snapshot, as after a freeze
    name = f"snapshot-{uuid.uuid4().hex[:8]}"
    request = csi_pb2.CreateSnapshotRequest(source_volume_id=source.volume_id, name=name)
    snap = ctl.CreateSnapshot(request).snapshot
    deadline = time.monotonic() + 30
    while not snap.ready_to_use and time.monotonic() < deadline:
        time.sleep(0.05)  # the snapshotter polls CreateSnapshot the same way
        again = ctl.CreateSnapshot(request).snapshot
        assert again.snapshot_id == snap.snapshot_id
        snap = again
    assert snap.ready_to_use and snap.size_bytes == GIB
    unstage(node_a, source.volume_id, staging_a)

    assert code_of(lambda: create(ctl, "xfs", 1, first.zone, snapshot_id="s-nosuch")) == (
        "NOT_FOUND"
    )
    restored = create(ctl, "xfs", 2, first.zone, snapshot_id=snap.snapshot_id)
    volumes.append(restored.volume_id)
    assert restored.capacity_bytes == 2 * GIB
    assert restored.content_source.snapshot.snapshot_id == snap.snapshot_id
    staging_b = kubelet / "b"
    stage(node_b, restored.volume_id, staging_b, "xfs")
    try:
        assert (staging_b / "data" / "blob").read_bytes() == payload
        assert fs_bytes(staging_b) > 1.5 * GIB  # staging grew xfs to the larger disk
        before = fs_bytes(staging_b)
        assert expand(ctl, node_b, restored.volume_id, staging_b, 3, "xfs") == 3 * GIB
        assert fs_bytes(staging_b) > before + GIB // 2  # grown while mounted
        again = expand(ctl, node_b, restored.volume_id, staging_b, 3, "xfs")
        assert again == 3 * GIB  # a repeat changes nothing
        shrink = csi_pb2.ControllerExpandVolumeRequest(
            volume_id=restored.volume_id, capacity_range=csi_pb2.CapacityRange(required_bytes=GIB)
        )
        assert code_of(lambda: ctl.ControllerExpandVolume(shrink)) == "OUT_OF_RANGE"
    finally:
        unstage(node_b, restored.volume_id, staging_b)
    ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snap.snapshot_id))
    ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snap.snapshot_id))
    listed = ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(snapshot_id=snap.snapshot_id))
    assert list(listed.entries) == []


def test_ext4_online_expansion(
    ctl: ControllerService,
    make_node: MakeNode,
    kubelet: Path,
    volumes: list[str],
    node_emulator: EmulatorInfo,
) -> None:
    """ext4 grows online only with CAP_SYS_RESOURCE (the kernel's check for the resize
    ioctl); without it the node answers FAILED_PRECONDITION naming the capability."""
    inst = node_emulator.instances[0]
    node = make_node(inst)
    vol = create(ctl, "ext4", 1, inst.zone)
    volumes.append(vol.volume_id)
    staging = kubelet / "ext4"
    stage(node, vol.volume_id, staging, "ext4")
    try:
        before = fs_bytes(staging)
        if _has_cap_sys_resource():
            assert expand(ctl, node, vol.volume_id, staging, 2, "ext4") == 2 * GIB
            assert fs_bytes(staging) > before + GIB // 2
        else:
            with pytest.raises(DriverError) as caught:
                expand(ctl, node, vol.volume_id, staging, 2, "ext4")
            assert caught.value.code == "FAILED_PRECONDITION"
            assert "CAP_SYS_RESOURCE" in caught.value.message
            assert fs_bytes(staging) == before
    finally:
        unstage(node, vol.volume_id, staging)


def test_ext4_resized_while_detached_grows_at_the_next_stage(
    ctl: ControllerService,
    make_node: MakeNode,
    kubelet: Path,
    volumes: list[str],
    node_emulator: EmulatorInfo,
) -> None:
    """Offline expansion: the filesystem is grown before it is mounted again, which needs
    no capability beyond the device (unlike online ext4 growth)."""
    inst = node_emulator.instances[0]
    node = make_node(inst)
    vol = create(ctl, "ext4", 1, inst.zone)
    volumes.append(vol.volume_id)
    staging = kubelet / "ext4-offline"
    stage(node, vol.volume_id, staging, "ext4")
    (staging / "kept").write_text("still here\n")
    os.sync()
    small = fs_bytes(staging)
    unstage(node, vol.volume_id, staging)
    reply = ctl.ControllerExpandVolume(
        csi_pb2.ControllerExpandVolumeRequest(
            volume_id=vol.volume_id,
            capacity_range=csi_pb2.CapacityRange(required_bytes=2 * GIB),
            volume_capability=mount_cap("ext4"),
        )
    )
    assert reply.capacity_bytes == 2 * GIB
    stage(node, vol.volume_id, staging, "ext4")
    try:
        assert (staging / "kept").read_text() == "still here\n"
        assert fs_bytes(staging) > small + GIB // 2
    finally:
        unstage(node, vol.volume_id, staging)


def _has_cap_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << 24))
    return False


def test_modify_essd_pl0_to_pl1_and_refusals(
    ctl: ControllerService, node_emulator: EmulatorInfo, volumes: list[str]
) -> None:
    req = csi_pb2.CreateVolumeRequest(
        name=f"pvc-{uuid.uuid4().hex[:10]}",
        capacity_range=csi_pb2.CapacityRange(required_bytes=20 * GIB),
        volume_capabilities=[mount_cap("ext4")],
        parameters={"type": "cloud_essd", "performanceLevel": "PL0"},
    )
    vol = ctl.CreateVolume(req).volume
    volumes.append(vol.volume_id)

    def modify(**params: str) -> None:
        ctl.ControllerModifyVolume(
            csi_pb2.ControllerModifyVolumeRequest(
                volume_id=vol.volume_id, mutable_parameters=params
            )
        )

    node_emulator.admin("POST", "/modify-cooling", {"seconds": 600})
    try:
        modify(performanceLevel="PL1")
        assert ctl.disks.describe(vol.volume_id).performance_level == "PL1"  # type: ignore[union-attr]
        modify(performanceLevel="PL1")  # no change: OK without calling ECS
        assert code_of(lambda: modify(performanceLevel="PL2")) == "INVALID_ARGUMENT"
        assert code_of(lambda: modify(iops="1")) == "INVALID_ARGUMENT"
        # A second change inside ECS's cooling period: ABORTED, retried by the resizer.
        assert code_of(lambda: modify(type="cloud_ssd")) == "ABORTED"
    finally:
        node_emulator.admin("POST", "/modify-cooling", {"seconds": 0})
