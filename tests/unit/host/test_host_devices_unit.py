"""Device lookup rules that need no real block device."""

from __future__ import annotations

from pathlib import Path

import pytest

from csi_disk.errors import Unavailable
from csi_disk.host import devices
from csi_disk.host.devices import DeviceFinder, device_size_bytes, rescan, serial_for
from csi_disk.host.run import CommandFailed


def test_serial_is_the_id_without_prefix() -> None:
    assert serial_for("d-2ze6szkj0e6s0hsl6w5d") == "2ze6szkj0e6s0hsl6w5d"
    assert serial_for("2ze6szkj0e6s0hsl6w5d") == "2ze6szkj0e6s0hsl6w5d"


def test_serial_of_reads_virtio_and_padded_nvme(tmp_path: Path) -> None:
    (tmp_path / "sys/block/vdb").mkdir(parents=True)
    (tmp_path / "sys/block/vdb/serial").write_text("bp1virtio\n")
    (tmp_path / "sys/block/nvme1n1/device").mkdir(parents=True)
    (tmp_path / "sys/block/nvme1n1/device/serial").write_text("bp1nvme      \n")
    finder = DeviceFinder(tmp_path)
    assert finder.serial_of(Path("/dev/vdb")) == "bp1virtio"
    assert finder.serial_of("/dev/nvme1n1") == "bp1nvme"
    assert finder.serial_of("/dev/vdz") is None


def test_regular_files_are_never_returned_as_devices(tmp_path: Path) -> None:
    by_id = tmp_path / "dev/disk/by-id"
    by_id.mkdir(parents=True)
    (tmp_path / "dev/vdb").write_text("not a device")
    (by_id / "virtio-bp1virtio").symlink_to(tmp_path / "dev/vdb")
    (tmp_path / "sys/block/vdb").mkdir(parents=True)
    (tmp_path / "sys/block/vdb/serial").write_text("bp1virtio")
    assert DeviceFinder(tmp_path).find("d-bp1virtio") is None


def test_missing_tree_finds_nothing(tmp_path: Path) -> None:
    assert DeviceFinder(tmp_path / "absent").find("d-bp1virtio") is None


# --- size and rescan: the sysfs paths a node without util-linux tools takes --------------------


def sysfs_disk(sys_root: Path, name: str, sectors: str | None) -> Path:
    """A /sys/class/block/<name> entry (size in 512-byte sectors, when given)."""
    entry = sys_root / "class" / "block" / name
    entry.mkdir(parents=True)
    if sectors is not None:
        (entry / "size").write_text(f"{sectors}\n")
    return entry


@pytest.fixture
def no_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No blockdev (or any other program) on PATH."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_size_falls_back_to_sysfs_without_blockdev(no_tools: None, tmp_path: Path) -> None:
    sysfs_disk(tmp_path / "sys", "vdb", "41943040")
    assert device_size_bytes(tmp_path / "dev" / "vdb", tmp_path / "sys") == 20 << 30


@pytest.mark.parametrize("sectors", [None, "", "lots", "-1"])
def test_size_without_blockdev_or_a_readable_sysfs_size_is_unavailable(
    no_tools: None, tmp_path: Path, sectors: str | None
) -> None:
    sysfs_disk(tmp_path / "sys", "vdb", sectors)
    with pytest.raises(Unavailable, match="vdb"):
        device_size_bytes(tmp_path / "dev" / "vdb", tmp_path / "sys")


def test_rescan_asks_the_device_to_rescan(tmp_path: Path) -> None:
    entry = sysfs_disk(tmp_path / "sys", "sdc", "0")
    (entry / "device").mkdir()
    (entry / "device" / "rescan").write_text("")
    rescan(tmp_path / "dev" / "sdc", tmp_path / "sys")
    assert (entry / "device" / "rescan").read_text() == "1"


def test_rescan_without_a_trigger_does_nothing(tmp_path: Path) -> None:
    entry = sysfs_disk(tmp_path / "sys", "vdb", "0")
    rescan(tmp_path / "dev" / "vdb", tmp_path / "sys")  # virtio resizes by itself
    assert sorted(p.name for p in entry.iterdir()) == ["size"]


def test_rescan_that_cannot_be_written_is_a_command_failure(tmp_path: Path) -> None:
    entry = sysfs_disk(tmp_path / "sys", "sdc", "0")
    (entry / "device" / "rescan").mkdir(parents=True)  # not writable as a file
    with pytest.raises(CommandFailed, match="rescan"):
        rescan(tmp_path / "dev" / "sdc", tmp_path / "sys")


def test_rescan_of_a_loop_device_asks_losetup(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(devices, "run", lambda argv, timeout: calls.append(argv))
    rescan(tmp_path / "dev" / "loop7", tmp_path / "sys")
    assert calls == [["losetup", "-c", str(tmp_path / "dev" / "loop7")]]
