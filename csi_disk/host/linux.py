"""The host port on Linux: sysfs and udev for devices, blkid/mkfs/fsck for filesystems,
mountinfo and mount(8) for mounts."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from csi_disk.host import devices, filesystems, mounts
from csi_disk.host.filesystems import Probe, VolumeStats
from csi_disk.host.mounts import Mount


class LinuxHost:
    """Implements ``csi_disk.host.port.Host``; ``device_root`` prefixes /dev and /sys
    lookups ("/" on a node, a prepared tree in tests)."""

    def __init__(self, device_root: Path = Path("/")) -> None:
        self.finder = devices.DeviceFinder(device_root)

    def find_device(self, disk_id: str) -> Path | None:
        return self.finder.find(disk_id)

    def wait_for_device(self, disk_id: str, timeout: float) -> Path:
        return self.finder.wait_for(disk_id, timeout)

    def serial_of(self, device: Path) -> str | None:
        return self.finder.serial_of(device)

    def device_number(self, path: Path) -> int | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_rdev if stat.S_ISBLK(st.st_mode) else None

    def device_size(self, device: Path) -> int:
        return devices.device_size_bytes(device)

    def rescan(self, device: Path) -> None:
        devices.rescan(device)

    def probe(self, device: Path) -> Probe:
        return filesystems.probe(device)

    def format(self, device: Path, fstype: str, options: Sequence[str]) -> None:
        filesystems.format(device, fstype, options)

    def fsck(self, device: Path, fstype: str) -> None:
        filesystems.fsck(device, fstype)

    def grow(self, device: Path, mount_path: Path | None, fstype: str) -> None:
        filesystems.grow(device, mount_path, fstype)

    def ext_size(self, device: Path) -> int:
        return filesystems.ext_size_bytes(device)

    def stats(self, path: Path, timeout: float) -> VolumeStats:
        return filesystems.stats(path, timeout)

    def mount(self, device: Path, target: Path, fstype: str, options: Sequence[str]) -> None:
        mounts.mount(device, target, fstype, options)

    def bind_mount(
        self, source: Path, target: Path, read_only: bool, options: Sequence[str]
    ) -> None:
        mounts.bind_mount(source, target, read_only, options)

    def unmount(self, target: Path) -> None:
        mounts.unmount(target)

    def find_mount(self, path: Path) -> Mount | None:
        return mounts.find_mount(path)

    def mounts_of_device(self, device: Path) -> list[Mount]:
        node_root = "/" + Path(os.path.realpath(device)).name
        binds = [
            m
            for m in mounts.read_mounts()
            if m.fstype == "devtmpfs" and m.root == node_root and m.mount_point != "/dev"
        ]
        return mounts.mounts_of_device(device) + binds
