"""The node service end to end on real loop devices, checked with findmnt, blkid and losetup."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from csi_disk.cloud.ecs import EcsCloud
from csi_disk.csi_pb import csi_pb2
from csi_disk.errors import DriverError
from csi_disk.node import NodeService
from csi_disk_emulator.process import EmulatorInfo, EmulatorInstance
from tests.integration.node.conftest import instances
from tests.integration.node.tools import blkid, disk_file, findmnt, loops_of, tool

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

Cap = csi_pb2.VolumeCapability
Mode = Cap.AccessMode
MakeNode = Callable[[EmulatorInstance], NodeService]
MakeDisk = Callable[[str], str]


def mount_cap(fs: str, mode: int = Mode.SINGLE_NODE_WRITER) -> Any:
    return Cap(mount=Cap.MountVolume(fs_type=fs), access_mode=Mode(mode=mode))


def block_cap() -> Any:
    return Cap(block=Cap.BlockVolume(), access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER))


def stage(node: NodeService, disk_id: str, staging: Path, cap: Any) -> None:
    request = csi_pb2.NodeStageVolumeRequest(
        volume_id=disk_id, staging_target_path=str(staging), volume_capability=cap
    )
    node.NodeStageVolume(request, None)


def unstage(node: NodeService, disk_id: str, staging: Path) -> None:
    request = csi_pb2.NodeUnstageVolumeRequest(volume_id=disk_id, staging_target_path=str(staging))
    node.NodeUnstageVolume(request, None)


def publish(
    node: NodeService, disk_id: str, staging: Path, target: Path, cap: Any, ro: bool = False
) -> None:
    request = csi_pb2.NodePublishVolumeRequest(
        volume_id=disk_id,
        staging_target_path=str(staging),
        target_path=str(target),
        volume_capability=cap,
        readonly=ro,
    )
    node.NodePublishVolume(request, None)


def unpublish(node: NodeService, disk_id: str, target: Path) -> None:
    request = csi_pb2.NodeUnpublishVolumeRequest(volume_id=disk_id, target_path=str(target))
    node.NodeUnpublishVolume(request, None)


def code_of(fn: Callable[[], None]) -> str:
    with pytest.raises(DriverError) as info:
        fn()
    return info.value.code


def two_in_one_zone(info: EmulatorInfo, bus: str) -> tuple[EmulatorInstance, EmulatorInstance]:
    found = instances(info, bus)
    first = found[0]
    second = next(i for i in found[1:] if i.zone == first.zone)
    return first, second


def test_ext4_mount_lifecycle_and_data_moves_to_another_instance(
    node_emulator: EmulatorInfo,
    cloud: EcsCloud,
    make_node: MakeNode,
    make_disk: MakeDisk,
    kubelet: Path,
) -> None:
    first, second = two_in_one_zone(node_emulator, "virtio")
    node = make_node(first)
    disk_id = make_disk(first.zone)
    staging = kubelet / "plugins" / "pv1" / "globalmount"
    target = kubelet / "pods" / "p1" / "volumes" / "pv1" / "mount"
    target_ro = kubelet / "pods" / "p2" / "volumes" / "pv1" / "mount"
    cap = mount_cap("ext4")

    stage(node, disk_id, staging, cap)
    [loop] = loops_of(node_emulator, disk_id)
    uuid = blkid(loop)["UUID"]
    stage(node, disk_id, staging, cap)  # a repeat is a no-op: same filesystem, one mount
    assert blkid(loop)["TYPE"] == "ext4" and blkid(loop)["UUID"] == uuid
    mounted = findmnt(staging)
    assert (mounted["SOURCE"], mounted["FSTYPE"]) == (loop, "ext4")
    assert tool("findmnt", "-n", "-o", "TARGET", loop).count(str(staging)) == 1

    publish(node, disk_id, staging, target, cap)
    publish(node, disk_id, staging, target, cap)
    publish(node, disk_id, staging, target_ro, cap, ro=True)
    assert findmnt(target)["MAJ:MIN"] == mounted["MAJ:MIN"]
    assert "ro" in findmnt(target_ro)["OPTIONS"].split(",")
    (target / "data.txt").write_text("survives")
    with pytest.raises(OSError) as refused:
        (target_ro / "other.txt").write_text("no")
    assert refused.value.errno == errno.EROFS

    stats = node.NodeGetVolumeStats(
        csi_pb2.NodeGetVolumeStatsRequest(volume_id=disk_id, volume_path=str(target)), None
    )
    assert not stats.volume_condition.abnormal
    assert 900 << 20 < stats.usage[0].total <= 1 << 30
    assert stats.usage[1].unit == csi_pb2.VolumeUsage.INODES and stats.usage[1].used > 0

    for t in (target, target_ro):
        unpublish(node, disk_id, t)
        unpublish(node, disk_id, t)
        assert not t.exists() and findmnt(t) == {}
    unstage(node, disk_id, staging)
    unstage(node, disk_id, staging)
    assert findmnt(staging) == {} and not staging.exists()
    assert loops_of(node_emulator, disk_id) == []
    assert cloud.describe_disks([disk_id])[0].attachments == ()

    other = make_node(second)
    stage(other, disk_id, staging, cap)
    [loop2] = loops_of(node_emulator, disk_id)
    assert blkid(loop2)["UUID"] == uuid  # the same filesystem, not a new one
    assert (staging / "data.txt").read_text() == "survives"
    assert cloud.describe_disks([disk_id])[0].attachments == (second.id,)
    unstage(other, disk_id, staging)
    assert loops_of(node_emulator, disk_id) == []


def test_xfs_on_nvme_and_block_volume(
    node_emulator: EmulatorInfo, make_node: MakeNode, make_disk: MakeDisk, kubelet: Path
) -> None:
    nvme = instances(node_emulator, "nvme")[0]
    node = make_node(nvme)
    fs_disk, raw_disk = make_disk(nvme.zone), make_disk(nvme.zone)
    staging, target = kubelet / "xfs" / "globalmount", kubelet / "pods" / "x" / "mount"
    stage(node, fs_disk, staging, mount_cap("xfs"))
    [loop] = loops_of(node_emulator, fs_disk)
    by_id = Path(nvme.device_root) / "dev" / "disk" / "by-id"
    assert (by_id / f"nvme-Alibaba_Cloud_Elastic_Block_Storage_{fs_disk[2:]}").exists()
    assert blkid(loop)["TYPE"] == "xfs"
    assert findmnt(staging)["FSTYPE"] == "xfs"
    publish(node, fs_disk, staging, target, mount_cap("xfs"))
    (target / "f").write_text("x")
    unpublish(node, fs_disk, target)
    unstage(node, fs_disk, staging)
    assert loops_of(node_emulator, fs_disk) == []

    block_staging = kubelet / "block" / "staging"
    block_staging.mkdir(parents=True)
    device_file = kubelet / "block" / "publish" / "pod-uid"
    stage(node, raw_disk, block_staging, block_cap())
    [raw_loop] = loops_of(node_emulator, raw_disk)
    publish(node, raw_disk, block_staging, device_file, block_cap())
    publish(node, raw_disk, block_staging, device_file, block_cap())
    mode = os.stat(device_file).st_mode
    assert stat.S_ISBLK(mode)
    assert os.stat(device_file).st_rdev == os.stat(raw_loop).st_rdev
    with open(device_file, "r+b") as dev:
        dev.seek(4096)
        dev.write(b"raw block data")
    stats = node.NodeGetVolumeStats(
        csi_pb2.NodeGetVolumeStatsRequest(volume_id=raw_disk, volume_path=str(device_file)),
        None,
    )
    assert stats.usage[0].total == 1 << 30
    busy = code_of(lambda: unstage(node, raw_disk, block_staging))
    assert busy == "FAILED_PRECONDITION"  # a pod still holds the device: no detach
    assert loops_of(node_emulator, raw_disk) == [raw_loop]
    unpublish(node, raw_disk, device_file)
    assert not device_file.exists()
    unstage(node, raw_disk, block_staging)
    assert loops_of(node_emulator, raw_disk) == []
    with open(disk_file(node_emulator, raw_disk), "rb") as backing:
        backing.seek(4096)
        assert backing.read(14) == b"raw block data"
    assert blkid(disk_file(node_emulator, raw_disk)) == {}  # nothing was formatted


def _mbr(path: Path) -> None:
    with open(path, "r+b") as f:
        entry = bytes([0, 0, 0, 0, 0x83, 0, 0, 0]) + (2048).to_bytes(4, "little")
        entry += (4096).to_bytes(4, "little")
        f.seek(446)
        f.write(entry)
        f.seek(510)
        f.write(b"\x55\xaa")


@pytest.mark.parametrize(
    "prepare",
    [
        pytest.param(lambda p: tool("mkfs.xfs", "-q", "-f", str(p)), id="xfs-filesystem"),
        pytest.param(_mbr, id="partition-table"),
        pytest.param(lambda p: tool("mkswap", str(p)), id="swap-signature"),
    ],
)
def test_existing_content_is_never_reformatted(
    node_emulator: EmulatorInfo,
    make_node: MakeNode,
    make_disk: MakeDisk,
    kubelet: Path,
    prepare: Callable[[Path], object],
) -> None:
    instance = instances(node_emulator, "virtio")[0]
    node = make_node(instance)
    disk_id = make_disk(instance.zone)
    backing = disk_file(node_emulator, disk_id)
    prepare(backing)
    before = blkid(backing)
    assert before  # the test really put a signature there
    staging = kubelet / "s"
    assert code_of(lambda: stage(node, disk_id, staging, mount_cap("ext4"))) == (
        "FAILED_PRECONDITION"
    )
    assert findmnt(staging) == {}
    unstage(node, disk_id, staging)
    assert loops_of(node_emulator, disk_id) == []
    assert blkid(backing) == before


def test_wrong_zone_and_unknown_disk_are_refused(
    node_emulator: EmulatorInfo,
    cloud: EcsCloud,
    make_node: MakeNode,
    make_disk: MakeDisk,
    kubelet: Path,
) -> None:
    here = instances(node_emulator, "virtio")[0]
    elsewhere = next(z for z in node_emulator.zones if z != here.zone)
    node = make_node(here)
    disk_id = make_disk(elsewhere)
    assert code_of(lambda: stage(node, disk_id, kubelet / "s", mount_cap("ext4"))) == (
        "FAILED_PRECONDITION"
    )
    assert cloud.describe_disks([disk_id])[0].attachments == ()
    assert code_of(lambda: stage(node, "d-doesnotexist0", kubelet / "s", block_cap())) == (
        "NOT_FOUND"
    )
    info = node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), None)
    assert info.node_id == here.id
    assert info.accessible_topology.segments["topology.kubernetes.io/zone"] == here.zone
    assert 0 < info.max_volumes_per_node <= 16


def test_unstage_after_a_crash_between_attach_and_mount(
    node_emulator: EmulatorInfo,
    cloud: EcsCloud,
    make_node: MakeNode,
    make_disk: MakeDisk,
    kubelet: Path,
) -> None:
    """The kubelet's uncertain state: attached, nothing mounted; unstage just detaches."""
    instance = instances(node_emulator, "virtio")[0]
    node = make_node(instance)
    disk_id = make_disk(instance.zone)
    stage(node, disk_id, kubelet / "blk", block_cap())  # attach only
    assert len(loops_of(node_emulator, disk_id)) == 1
    staging = kubelet / "never-mounted"
    unstage(node, disk_id, staging)
    assert loops_of(node_emulator, disk_id) == []
    assert cloud.describe_disks([disk_id])[0].status == "Available"


def test_restage_after_a_crash_between_format_and_mount_keeps_the_filesystem(
    node_emulator: EmulatorInfo, make_node: MakeNode, make_disk: MakeDisk, kubelet: Path
) -> None:
    instance = instances(node_emulator, "virtio")[0]
    disk_id = make_disk(instance.zone)
    staging = kubelet / "s"
    stage(make_node(instance), disk_id, staging, mount_cap("ext4"))
    [loop] = loops_of(node_emulator, disk_id)
    uuid = blkid(loop)["UUID"]
    (staging / "kept").write_text("yes")
    tool("umount", str(staging))  # the plugin died: formatted and attached, not mounted
    restarted = make_node(instance)
    stage(restarted, disk_id, staging, mount_cap("ext4"))
    assert findmnt(staging)["SOURCE"] == loop
    assert blkid(loop)["UUID"] == uuid
    assert (staging / "kept").read_text() == "yes"
    unstage(restarted, disk_id, staging)
    assert loops_of(node_emulator, disk_id) == []
