"""Disks as real block devices: sparse files behind loop devices, published per instance.

Each instance has a device root that mimics what its VM would see, so the node plugin's
device lookup runs unchanged against it:

    virtio: <root>/dev/disk/by-id/virtio-<serial> -> /dev/loopN, <root>/sys/block/loopN/serial
    NVMe:   <root>/dev/disk/by-id/nvme-Alibaba_Cloud_Elastic_Block_Storage_<serial> -> /dev/loopN,
            <root>/sys/block/loopN/device/serial
    both:   <root>/dev/loopN -> /dev/loopN

where serial is the disk id without ``d-``.

A disk file is as large as its disk, up to what the filesystem under the state dir allows
one file to be (16 TiB on ext4 with 4 KiB blocks, while ECS sells 32 TiB disks): a larger
disk is created or grown all the same, as ECS would, and its file (so its loop device)
stops at that ceiling. ``file_size_cap`` says where.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

NVME_PREFIX = "nvme-Alibaba_Cloud_Elastic_Block_Storage_"


class BlockDeviceError(RuntimeError):
    """losetup failed: the emulator reports it as an ECS InternalError."""


def serial_of(disk_id: str) -> str:
    """The serial a guest sees for a disk: its id without the ``d-`` prefix."""
    return disk_id[2:] if disk_id.startswith("d-") else disk_id


def loop_devices_available() -> bool:
    """Whether this host can set up loop devices (root and /dev/loop-control)."""
    return (
        os.geteuid() == 0 and Path("/dev/loop-control").exists() and bool(shutil.which("losetup"))
    )


class BlockDevices:
    """Creates disk files and attaches them; ``enabled=False`` keeps only the files."""

    def __init__(self, state_dir: Path, enabled: bool) -> None:
        self.disk_dir = state_dir / "disks"
        self.snapshot_dir = state_dir / "snapshots"
        self.instance_dir = state_dir / "instances"
        self.enabled = enabled
        self.disk_dir.mkdir(parents=True, exist_ok=True)
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self.instance_dir.mkdir(parents=True, exist_ok=True)

    def disk_file(self, disk_id: str) -> Path:
        return self.disk_dir / f"{disk_id}.img"

    def device_root(self, instance_id: str) -> Path:
        return self.instance_dir / instance_id / "root"

    def create(self, disk_id: str, size_gib: int) -> None:
        """A sparse file of the disk's size: truncate allocates no blocks."""
        path = self.disk_file(disk_id)
        with open(path, "ab") as f:
            size_sparse_file(f.fileno(), size_gib * 1024**3)

    def delete(self, disk_id: str) -> None:
        self.disk_file(disk_id).unlink(missing_ok=True)

    def snapshot_file(self, snapshot_id: str) -> Path:
        return self.snapshot_dir / f"{snapshot_id}.img"

    def take_snapshot(self, disk_id: str, snapshot_id: str) -> None:
        """Copy the disk's current content (what its page cache holds) into a sparse file."""
        sparse_copy(self.disk_file(disk_id), self.snapshot_file(snapshot_id))

    def restore(self, disk_id: str, snapshot_id: str, size_gib: int) -> None:
        """A new disk file holding the snapshot's data, then grown to ``size_gib``."""
        path = self.disk_file(disk_id)
        sparse_copy(self.snapshot_file(snapshot_id), path)
        with open(path, "ab") as f:
            size_sparse_file(f.fileno(), max(size_gib * 1024**3, os.fstat(f.fileno()).st_size))

    def delete_snapshot(self, snapshot_id: str) -> None:
        self.snapshot_file(snapshot_id).unlink(missing_ok=True)

    def grow(self, disk_id: str, size_gib: int, loop: str | None) -> None:
        """Grow the file and tell an attached loop device about the new size."""
        with open(self.disk_file(disk_id), "ab") as f:
            size_sparse_file(f.fileno(), size_gib * 1024**3)
        if loop and self.enabled:
            _run(["losetup", "-c", loop])

    def attach(self, disk_id: str, instance_id: str, bus: str) -> str | None:
        """Set up a loop device for the disk and publish it under the instance's root."""
        if not self.enabled:
            return None
        loop = _run(["losetup", "--find", "--show", str(self.disk_file(disk_id))]).strip()
        self.publish(disk_id, instance_id, bus, loop)
        return loop

    def publish(self, disk_id: str, instance_id: str, bus: str, loop: str) -> None:
        """Write the by-id link, the sysfs serial and the /dev node link for ``loop``."""
        root = self.device_root(instance_id)
        name = Path(loop).name
        serial = serial_of(disk_id)
        by_id = root / "dev" / "disk" / "by-id"
        by_id.mkdir(parents=True, exist_ok=True)
        link_name = f"virtio-{serial}" if bus == "virtio" else f"{NVME_PREFIX}{serial}"
        _replace_symlink(by_id / link_name, loop)
        _replace_symlink(root / "dev" / name, loop)
        sys_dir = root / "sys" / "block" / name
        serial_dir = sys_dir if bus == "virtio" else sys_dir / "device"
        serial_dir.mkdir(parents=True, exist_ok=True)
        (serial_dir / "serial").write_text(serial, encoding="utf-8")

    def unpublish(self, disk_id: str, instance_id: str, loop: str | None) -> None:
        """Remove what ``publish`` wrote; missing pieces are fine (idempotent)."""
        root = self.device_root(instance_id)
        serial = serial_of(disk_id)
        by_id = root / "dev" / "disk" / "by-id"
        for link in (by_id / f"virtio-{serial}", by_id / f"{NVME_PREFIX}{serial}"):
            link.unlink(missing_ok=True)
        if loop:
            name = Path(loop).name
            (root / "dev" / name).unlink(missing_ok=True)
            shutil.rmtree(root / "sys" / "block" / name, ignore_errors=True)

    def detach(self, disk_id: str, instance_id: str, loop: str | None) -> None:
        """Unpublish and release the loop device."""
        self.unpublish(disk_id, instance_id, loop)
        if loop and self.enabled and self.backing_file(loop) == self.disk_file(disk_id):
            _run(["losetup", "-d", loop])

    def backing_file(self, loop: str) -> Path | None:
        """The file behind a loop device, or None when it is not set up."""
        sys_path = Path("/sys/block") / Path(loop).name / "loop" / "backing_file"
        try:
            return Path(sys_path.read_text(encoding="utf-8").strip())
        except OSError:
            return None

    def our_loop_devices(self) -> dict[str, Path]:
        """Every loop device backed by one of this state dir's disk files."""
        if not self.enabled:
            return {}
        out = _run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"])
        found = {}
        for line in out.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2:
                backing = Path(parts[1].strip().removesuffix(" (deleted)"))
                if backing.parent == self.disk_dir:
                    found[parts[0]] = backing
        return found

    def clear_published(self, instance_id: str) -> None:
        """Forget every device the instance's root shows (reconcile republishes)."""
        root = self.device_root(instance_id)
        shutil.rmtree(root / "dev", ignore_errors=True)
        shutil.rmtree(root / "sys", ignore_errors=True)
        (root / "dev" / "disk" / "by-id").mkdir(parents=True, exist_ok=True)
        (root / "sys" / "block").mkdir(parents=True, exist_ok=True)


_CAP_STEP = 1024**3  # caps are whole GiB, as disk sizes are


def size_sparse_file(fd: int, size: int) -> int:
    """Set the file's size to ``size`` bytes, or to the largest whole GiB the filesystem
    lets a file have when ``size`` is beyond it (EFBIG); the size it got."""
    try:
        os.ftruncate(fd, size)
        return size
    except OSError as err:
        if err.errno != errno.EFBIG:
            raise
    low, high = os.fstat(fd).st_size // _CAP_STEP, size // _CAP_STEP  # low fits, high not
    while high - low > 1:
        middle = (low + high) // 2
        try:
            os.ftruncate(fd, middle * _CAP_STEP)
            low = middle
        except OSError as err:
            if err.errno != errno.EFBIG:
                raise
            high = middle
    capped = max(low * _CAP_STEP, os.fstat(fd).st_size)
    os.ftruncate(fd, capped)
    return capped


def file_size_cap(directory: Path) -> int | None:
    """The largest whole-GiB file ``directory``'s filesystem takes (probed with a sparse
    file of up to 64 TiB); None when it takes that much."""
    probe = directory / ".size-probe"
    try:
        with open(probe, "wb") as f:
            got = size_sparse_file(f.fileno(), 64 * 1024**4)
    finally:
        probe.unlink(missing_ok=True)
    return None if got == 64 * 1024**4 else got


def sparse_copy(source: Path, target: Path, chunk: int = 8 * 1024**2) -> None:
    """Copy only the data extents of ``source`` (SEEK_DATA/SEEK_HOLE): holes stay holes,
    so a mostly empty 100 GiB disk costs what it holds, not 100 GiB."""
    tmp = target.with_name(target.name + ".tmp")
    with open(source, "rb") as src, open(tmp, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        dst.truncate(size)
        offset = 0
        while offset < size:
            try:
                start = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole remains
                break
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            src.seek(start)
            dst.seek(start)
            remaining = end - start
            while remaining > 0:
                block = src.read(min(chunk, remaining))
                if not block:
                    break
                if block.count(0) == len(block):
                    dst.seek(len(block), os.SEEK_CUR)  # zeros inside an extent: keep a hole
                else:
                    dst.write(block)
                remaining -= len(block)
            offset = end
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, target)


def _replace_symlink(link: Path, target: str) -> None:
    tmp = link.with_name(link.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def _run(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BlockDeviceError(f"{argv[0]} {argv[1]} failed: {result.stderr.strip()}")
    return result.stdout
