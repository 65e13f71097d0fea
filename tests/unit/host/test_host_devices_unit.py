"""Device lookup rules that need no real block device."""

from __future__ import annotations

from pathlib import Path

from csi_disk.host.devices import DeviceFinder, serial_for


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
