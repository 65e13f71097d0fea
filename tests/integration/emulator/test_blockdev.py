"""Attached disks are real block devices under the instance's device root, checked with
the system's own tools (blkid, findmnt, losetup), never the emulator's helpers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from csi_disk_emulator.process import running_emulator
from tests.integration.emulator.conftest import LATENCY_SCALE
from tests.integration.emulator.sdk import Ecs

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]


def _run(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True).stdout


def _by_id(root: Path, bus: str, disk_id: str) -> Path:
    name = "virtio-" if bus == "virtio" else "nvme-Alibaba_Cloud_Elastic_Block_Storage_"
    return root / "dev" / "disk" / "by-id" / f"{name}{disk_id[2:]}"


@pytest.mark.parametrize("bus", ["virtio", "nvme"])
def test_attached_disk_is_a_block_device_that_formats_mounts_and_keeps_data(
    host_dir: Path, bus: str
) -> None:
    with running_emulator(host_dir / "ecs", latency_scale=LATENCY_SCALE) as info:
        ecs = Ecs.for_account(info)
        inst = next(i for i in info.instances if i.bus == bus)
        root = Path(inst.device_root)
        disk_id = ecs.create_available(
            inst.zone, DiskCategory="cloud_essd", Size=1, PerformanceLevel="PL0"
        )
        disk_file = info.state_dir / "disks" / f"{disk_id}.img"
        assert os.stat(disk_file).st_blocks == 0  # sparse
        ecs.attach(disk_id, inst.id)

        link = _by_id(root, bus, disk_id)
        device = os.readlink(link)
        name = Path(device).name
        serial_file = (
            root / "sys" / "block" / name / ("serial" if bus == "virtio" else "device/serial")
        )
        assert serial_file.read_text().strip() == disk_id[2:]
        assert os.readlink(root / "dev" / name) == device
        assert str(disk_file) in _run("losetup", "-j", str(disk_file))
        assert device in _run("losetup", "-j", str(disk_file))

        _run("mkfs.ext4", "-q", "-F", device)
        assert 'TYPE="ext4"' in _run("blkid", "-p", device)
        mnt = host_dir / "mnt"
        mnt.mkdir()
        _run("mount", device, str(mnt))
        try:
            assert _run("findmnt", "-n", "-o", "SOURCE", str(mnt)).strip() == device
            (mnt / "hello").write_text("kept across detach")
        finally:
            _run("umount", str(mnt))

        ecs.detach(disk_id, inst.id)
        assert not os.path.lexists(link)
        assert not os.path.lexists(root / "dev" / name)
        assert _run("losetup", "-j", str(disk_file)).strip() == ""
        assert os.stat(disk_file).st_blocks * 512 < 1024**3  # still sparse

        ecs.attach(disk_id, inst.id)
        device = os.readlink(_by_id(root, bus, disk_id))
        _run("mount", device, str(mnt))
        try:
            assert (mnt / "hello").read_text() == "kept across detach"
        finally:
            _run("umount", str(mnt))
        ecs.detach(disk_id, inst.id)


def test_clean_shutdown_releases_loops_and_restart_reattaches(host_dir: Path) -> None:
    state = host_dir / "ecs"
    with running_emulator(state, latency_scale=LATENCY_SCALE) as info:
        ecs = Ecs.for_account(info)
        inst = info.instances[0]
        disk_id = ecs.create_available(inst.zone, DiskCategory="cloud_auto", Size=1)
        ecs.attach(disk_id, inst.id)
    disk_file = state / "disks" / f"{disk_id}.img"
    assert _run("losetup", "-j", str(disk_file)).strip() == ""
    with running_emulator(state, latency_scale=LATENCY_SCALE) as info:
        link = _by_id(Path(info.instances[0].device_root), "virtio", disk_id)
        assert os.readlink(link) in _run("losetup", "-j", str(disk_file))
        Ecs.for_account(info).detach(disk_id, inst.id)
