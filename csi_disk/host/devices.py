"""Finding the block device of an attached ECS disk, and its size.

ECS does not say which device name a disk gets; the disk's serial (its id without ``d-``)
does. Links in ``/dev/disk/by-id`` come first, then udev's properties, then a scan of sysfs,
which works with no udev daemon at all. Whatever a link claims, a device is returned only
when sysfs agrees on its serial: mounting another tenant's disk is the worst possible bug.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from csi_disk.errors import DeadlineExceeded, Unavailable
from csi_disk.host.run import CommandFailed, run

log = logging.getLogger(__name__)

VIRTIO_PREFIX = "virtio-"
NVME_MODEL = "Alibaba_Cloud_Elastic_Block_Storage"
NVME_PREFIX = f"nvme-{NVME_MODEL}_"
TOOL_TIMEOUT = 30.0


def serial_for(disk_id: str) -> str:
    """The serial a disk shows the guest: its id without the ``d-`` prefix."""
    return disk_id.removeprefix("d-")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _block_device(path: Path) -> Path | None:
    """``path`` resolved through links, if it ends at a block device node."""
    try:
        # strict: a link that appears between resolving and stat'ing must not be returned
        # unresolved, as a lenient realpath of a missing path would leave it.
        resolved = Path(os.path.realpath(path, strict=True))
        mode = resolved.stat().st_mode
    except OSError:
        return None
    return resolved if stat.S_ISBLK(mode) else None


class DeviceFinder:
    """Looks disks up below ``device_root`` ("/" on a node; a prepared tree in tests)."""

    def __init__(self, device_root: Path = Path("/")) -> None:
        self.device_root = Path(device_root)

    @property
    def _by_id(self) -> Path:
        return self.device_root / "dev" / "disk" / "by-id"

    @property
    def _sys_block(self) -> Path:
        return self.device_root / "sys" / "block"

    def serial_of(self, device: Path | str) -> str | None:
        """The serial sysfs reports for ``device`` (virtio or NVMe), or None."""
        name = Path(os.path.realpath(device)).name
        for relative in ("serial", "device/serial"):
            text = _read_text(self._sys_block / name / relative)
            if text:
                return text
        return None

    def _serial_matches(self, device: Path, disk_id: str) -> bool:
        serial = self.serial_of(device)
        return serial is None or serial in (serial_for(disk_id), disk_id)

    def find(self, disk_id: str) -> Path | None:
        """The block device of ``disk_id`` when it is attached here, else None."""
        for source, candidate in self._candidates(disk_id):
            device = _block_device(candidate)
            if device is None:
                continue
            if not self._serial_matches(device, disk_id):
                log.warning(
                    "%s points at %s whose serial is %r, not disk %s; ignoring it",
                    source,
                    device,
                    self.serial_of(device),
                    disk_id,
                )
                continue
            log.debug("disk %s is %s (found via %s)", disk_id, device, source)
            return device
        return None

    def wait_for(self, disk_id: str, timeout: float, interval: float = 0.2) -> Path:
        """Poll until ``disk_id`` shows up: attach completes before the kernel sees it."""
        deadline = time.monotonic() + timeout
        while True:
            device = self.find(disk_id)
            if device is not None:
                return device
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"disk {disk_id} did not appear as a block device within {timeout:g}s"
                )
            time.sleep(min(interval, remaining))

    def _candidates(self, disk_id: str) -> Iterator[tuple[str, Path]]:
        serial = serial_for(disk_id)
        for name in (VIRTIO_PREFIX + serial, NVME_PREFIX + serial, NVME_PREFIX + disk_id):
            yield f"link {name}", self._by_id / name
        if self.device_root == Path("/"):
            for node in self._udev_nodes(serial, disk_id):
                yield "udev", node
        for name in self._sys_names_with_serial(serial, disk_id):
            yield f"sysfs {name}", self.device_root / "dev" / name

    def _udev_nodes(self, serial: str, disk_id: str) -> Iterator[Path]:
        """Device nodes whose udev serial properties name the disk (needs a udev database)."""
        wanted = {serial, disk_id, f"{NVME_MODEL}_{serial}", f"{NVME_MODEL}_{disk_id}"}
        try:
            import pyudev

            devices = list(pyudev.Context().list_devices(subsystem="block", DEVTYPE="disk"))
        except Exception as exc:  # no udev on this host: sysfs still works
            log.debug("udev lookup unavailable: %s", exc)
            return
        for dev in devices:
            props = dev.properties
            serials = {props.get("ID_SERIAL"), props.get("ID_SERIAL_SHORT")}
            if dev.device_node and wanted.intersection(serials):
                yield Path(dev.device_node)

    def _sys_names_with_serial(self, serial: str, disk_id: str) -> Iterator[str]:
        try:
            entries = sorted(p.name for p in self._sys_block.iterdir())
        except OSError:
            return
        for name in entries:
            for relative in ("serial", "device/serial"):
                if _read_text(self._sys_block / name / relative) in (serial, disk_id):
                    yield name
                    break


def device_size_bytes(device: Path | str, sys_root: Path = Path("/sys")) -> int:
    """Size of a block device in bytes (blockdev, or sysfs when blockdev is missing)."""
    try:
        out = run(["blockdev", "--getsize64", os.fspath(device)], timeout=TOOL_TIMEOUT).stdout
        return int(out.strip())
    except (Unavailable, ValueError):
        name = Path(os.path.realpath(device)).name
        sectors = _read_text(sys_root / "class" / "block" / name / "size")
        if sectors is None or not sectors.isdigit():
            raise Unavailable(f"cannot read the size of {device}") from None
        return int(sectors) * 512


def rescan(device: Path | str, sys_root: Path = Path("/sys")) -> None:
    """Make the kernel notice a disk that grew in the cloud (before growing its filesystem)."""
    resolved = Path(os.path.realpath(device))
    if resolved.name.startswith("loop"):
        run(["losetup", "-c", os.fspath(resolved)], timeout=TOOL_TIMEOUT)
        return
    trigger = sys_root / "class" / "block" / resolved.name / "device" / "rescan"
    if not trigger.exists():
        log.debug("%s has no rescan trigger; virtio and NVMe disks resize by themselves", device)
        return
    try:
        trigger.write_text("1", encoding="ascii")
    except OSError as exc:
        raise CommandFailed("rescan", 1, f"writing {trigger}: {exc.strerror}") from exc
