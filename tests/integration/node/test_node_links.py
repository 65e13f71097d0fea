"""Links planted in the kubelet directory never carry a disk, a directory or a file outside it.

Real loop devices through the emulator; findmnt and the file system show what happened.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from csi_disk_emulator.process import EmulatorInfo
from tests.integration.node.conftest import instances
from tests.integration.node.test_node_real import (
    MakeDisk,
    MakeNode,
    block_cap,
    code_of,
    mount_cap,
    publish,
    stage,
    unpublish,
    unstage,
)
from tests.integration.node.tools import findmnt, loops_of, tool

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


@pytest.fixture
def outside(host_dir: Path) -> Path:
    path = host_dir / "outside"
    path.mkdir()
    return path


def mounts_below(path: Path) -> list[str]:
    """Every mount point at or below ``path`` as findmnt lists them."""
    out = tool("findmnt", "-n", "-l", "-o", "TARGET", check=False)
    prefix = str(path)
    return [t for t in out.splitlines() if t == prefix or t.startswith(prefix + "/")]


def test_stage_and_publish_through_links_leading_outside_are_refused(
    node_emulator: EmulatorInfo,
    make_node: MakeNode,
    make_disk: MakeDisk,
    kubelet: Path,
    outside: Path,
) -> None:
    instance = instances(node_emulator, "virtio")[0]
    node = make_node(instance)
    disk_id = make_disk(instance.zone)
    cap = mount_cap("ext4")
    (kubelet / "pods").mkdir()
    (kubelet / "pods" / "evil").symlink_to(outside)

    evil_staging = kubelet / "pods" / "evil" / "globalmount"
    assert code_of(lambda: stage(node, disk_id, evil_staging, cap)) == "INVALID_ARGUMENT"
    assert loops_of(node_emulator, disk_id) == []  # refused before attaching
    assert not (outside / "globalmount").exists()

    staging = kubelet / "plugins" / "pv" / "globalmount"
    stage(node, disk_id, staging, cap)
    try:
        evil_target = kubelet / "pods" / "evil" / "volumes" / "mount"
        assert code_of(lambda: publish(node, disk_id, staging, evil_target, cap)) == (
            "INVALID_ARGUMENT"
        )
        linked_staging = kubelet / "pods" / "staging-link"
        linked_staging.symlink_to(staging)
        good_target = kubelet / "pods" / "p1" / "mount"
        assert code_of(lambda: publish(node, disk_id, linked_staging, good_target, cap)) == (
            "INVALID_ARGUMENT"
        )
        assert mounts_below(outside) == []
        assert list(outside.iterdir()) == []
        assert findmnt(good_target) == {}
        assert mounts_below(kubelet) == [str(staging)]
    finally:
        unstage(node, disk_id, staging)
    assert findmnt(staging) == {}


def test_block_publish_onto_a_dangling_link_creates_nothing_outside(
    node_emulator: EmulatorInfo,
    make_node: MakeNode,
    make_disk: MakeDisk,
    kubelet: Path,
    outside: Path,
) -> None:
    instance = instances(node_emulator, "virtio")[0]
    node = make_node(instance)
    disk_id = make_disk(instance.zone)
    staging = kubelet / "block" / "staging"
    staging.mkdir(parents=True)
    stage(node, disk_id, staging, block_cap())
    try:
        device_file = kubelet / "block" / "publish" / "pod-uid"
        device_file.parent.mkdir()
        device_file.symlink_to(outside / "device")
        code = code_of(lambda: publish(node, disk_id, staging, device_file, block_cap()))
        assert code == "INVALID_ARGUMENT"
        assert not (outside / "device").exists()
        assert findmnt(outside / "device") == {} and mounts_below(kubelet) == []

        linked_dir = kubelet / "block" / "evil"
        linked_dir.symlink_to(outside)
        code = code_of(lambda: publish(node, disk_id, staging, linked_dir / "f", block_cap()))
        assert code == "INVALID_ARGUMENT"
        assert list(outside.iterdir()) == [] and mounts_below(outside) == []
    finally:
        unstage(node, disk_id, staging)


def test_unpublish_of_a_link_removes_it_and_unmounts_nothing_it_points_at(
    node_emulator: EmulatorInfo,
    make_node: MakeNode,
    make_disk: MakeDisk,
    kubelet: Path,
    outside: Path,
) -> None:
    instance = instances(node_emulator, "virtio")[0]
    node = make_node(instance)
    disk_id = make_disk(instance.zone)
    staging = kubelet / "plugins" / "pv" / "globalmount"
    stage(node, disk_id, staging, mount_cap("ext4"))
    try:
        link = kubelet / "pods" / "p1" / "mount"
        link.parent.mkdir(parents=True)
        link.symlink_to(staging)
        unpublish(node, disk_id, link)
        assert not link.is_symlink() and not link.exists()
        assert findmnt(staging) != {}  # the staged filesystem it pointed at is still there
    finally:
        unstage(node, disk_id, staging)
    assert findmnt(staging) == {}
