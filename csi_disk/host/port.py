"""The OS port: what the node service asks of its host, as a Protocol.

``csi_disk.host.linux.LinuxHost`` implements it with sysfs, udev links, blkid, mkfs and
mount(8); the unit tests implement it in memory. The node handler and the safe
format-and-mount policy (``csi_disk.host.safe_mount``) depend on this Protocol only, so
every decision they take runs the same against either.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from csi_disk.host.filesystems import Probe, VolumeStats
from csi_disk.host.mounts import Mount


@runtime_checkable
class Host(Protocol):
    """Block devices, filesystems and mounts of the node's host."""

    # --- devices ------------------------------------------------------------------------

    def find_device(self, disk_id: str) -> Path | None:
        """The disk's block device, its serial checked; None when it is not attached here."""
        ...

    def wait_for_device(self, disk_id: str, timeout: float) -> Path:
        """``find_device`` until it answers; DeadlineExceeded after ``timeout`` seconds."""
        ...

    def serial_of(self, device: Path) -> str | None: ...

    def device_number(self, path: Path) -> int | None:
        """``st_rdev`` of a block device node (through links and bind mounts), else None."""
        ...

    def device_size(self, device: Path) -> int: ...

    def rescan(self, device: Path) -> None:
        """Let the kernel see a disk grown by the cloud."""
        ...

    # --- filesystems --------------------------------------------------------------------

    def probe(self, device: Path) -> Probe: ...

    def format(self, device: Path, fstype: str, options: Sequence[str]) -> None:
        """Create ``fstype``; refuses a device that holds any signature."""
        ...

    def fsck(self, device: Path, fstype: str) -> None: ...

    def grow(self, device: Path, mount_path: Path | None, fstype: str) -> None:
        """Grow the filesystem to its device: online at ``mount_path``, offline when None."""
        ...

    def ext_size(self, device: Path) -> int:
        """Bytes an unmounted ext filesystem spans, from its superblock."""
        ...

    def stats(self, path: Path, timeout: float) -> VolumeStats: ...

    # --- mounts -------------------------------------------------------------------------

    def mount(self, device: Path, target: Path, fstype: str, options: Sequence[str]) -> None: ...

    def bind_mount(
        self, source: Path, target: Path, read_only: bool, options: Sequence[str]
    ) -> None: ...

    def unmount(self, target: Path) -> None: ...

    def find_mount(self, path: Path) -> Mount | None: ...

    def mounts_of_device(self, device: Path) -> list[Mount]:
        """Filesystems on ``device`` and bind mounts of its node (raw block publishes)."""
        ...
