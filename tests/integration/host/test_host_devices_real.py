"""Disk lookup by serial in a device tree laid out the way the emulator publishes disks."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from csi_disk.errors import DeadlineExceeded
from csi_disk.host.devices import NVME_PREFIX, VIRTIO_PREFIX, DeviceFinder, device_size_bytes

pytestmark = pytest.mark.root

DISK_A = "d-2ze6szkj0e6s0hsl6w5d"
DISK_B = "d-bp1abcdefghij0123456"


class Tree:
    """A host-root prefix with /dev and /sys entries pointing at real loop devices."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "dev" / "disk" / "by-id").mkdir(parents=True)
        (root / "sys" / "block").mkdir(parents=True)

    def attach(self, disk_id: str, loop: str, nvme: bool = False, link: bool = True) -> None:
        serial = disk_id.removeprefix("d-")
        name = Path(loop).name
        node = self.root / "dev" / name
        if not node.exists():
            node.symlink_to(loop)
        sys_dir = self.root / "sys" / "block" / name
        if nvme:
            (sys_dir / "device").mkdir(parents=True)
            # NVMe pads its serial with spaces.
            (sys_dir / "device" / "serial").write_text(f"{serial}      \n")
        else:
            sys_dir.mkdir(parents=True)
            (sys_dir / "serial").write_text(serial)
        if link:
            self.link(disk_id, loop, nvme)

    def link(self, disk_id: str, loop: str, nvme: bool = False) -> None:
        prefix = NVME_PREFIX if nvme else VIRTIO_PREFIX
        (self.root / "dev" / "disk" / "by-id" / (prefix + disk_id.removeprefix("d-"))).symlink_to(
            loop
        )


@pytest.fixture
def tree(host_dir: Path) -> Tree:
    return Tree(host_dir / "host")


@pytest.mark.parametrize("nvme", [False, True])
def test_found_by_link(nvme: bool, tree: Tree, loop_device: Callable[..., str]) -> None:
    a, b = loop_device(8), loop_device(8)
    tree.attach(DISK_A, a, nvme=nvme)
    tree.attach(DISK_B, b, nvme=nvme)
    finder = DeviceFinder(tree.root)
    assert finder.find(DISK_A) == Path(a)
    assert finder.find(DISK_B) == Path(b)
    assert finder.serial_of(a) == DISK_A.removeprefix("d-")
    assert finder.serial_of(tree.root / "dev" / Path(b).name) == DISK_B.removeprefix("d-")
    assert finder.find("d-notattached000000000") is None


@pytest.mark.parametrize("nvme", [False, True])
def test_found_by_sysfs_without_links(
    nvme: bool, tree: Tree, loop_device: Callable[..., str]
) -> None:
    a, b = loop_device(8), loop_device(8)
    tree.attach(DISK_B, b, nvme=nvme, link=False)
    tree.attach(DISK_A, a, nvme=nvme, link=False)
    finder = DeviceFinder(tree.root)
    assert finder.find(DISK_A) == Path(a)
    assert finder.find(DISK_B) == Path(b)


def test_link_to_another_disks_device_is_never_returned(
    tree: Tree, loop_device: Callable[..., str]
) -> None:
    a, b = loop_device(8), loop_device(8)
    tree.attach(DISK_B, b)
    # A stale link claims DISK_A lives on DISK_B's device; DISK_A itself is not attached.
    tree.link(DISK_A, b)
    finder = DeviceFinder(tree.root)
    assert finder.find(DISK_A) is None
    # Once DISK_A really appears in sysfs, the scan finds the right device despite the link.
    tree.attach(DISK_A, a, link=False)
    assert finder.find(DISK_A) == Path(a)
    assert finder.find(DISK_B) == Path(b)


def test_link_to_something_that_is_not_a_block_device_is_ignored(tree: Tree) -> None:
    regular = tree.root / "not-a-device"
    regular.write_text("x")
    tree.link(DISK_A, str(regular))
    (tree.root / "dev" / "disk" / "by-id" / (NVME_PREFIX + "dangling")).symlink_to("/nope")
    assert DeviceFinder(tree.root).find(DISK_A) is None


def test_wait_for_returns_once_the_disk_appears(
    tree: Tree, loop_device: Callable[..., str]
) -> None:
    a = loop_device(8)
    appeared = threading.Event()

    def attach_later() -> None:
        appeared.wait(5)
        tree.attach(DISK_A, a, nvme=True)

    worker = threading.Thread(target=attach_later)
    worker.start()
    finder = DeviceFinder(tree.root)
    try:
        assert finder.find(DISK_A) is None
        appeared.set()
        assert finder.wait_for(DISK_A, timeout=10, interval=0.05) == Path(a)
    finally:
        appeared.set()
        worker.join()


def test_wait_for_names_the_missing_disk(tree: Tree) -> None:
    with pytest.raises(DeadlineExceeded, match=DISK_A):
        DeviceFinder(tree.root).wait_for(DISK_A, timeout=0.3, interval=0.1)


def test_device_size(loop_device: Callable[..., str]) -> None:
    dev = loop_device(24)
    assert device_size_bytes(dev) == 24 * 1024 * 1024
    fd = os.open(dev, os.O_RDONLY)
    try:
        assert os.lseek(fd, 0, os.SEEK_END) == device_size_bytes(dev)
    finally:
        os.close(fd)
