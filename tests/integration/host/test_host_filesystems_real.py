"""Format, mount, bind, grow and measure on real loop devices, checked with independent tools."""

from __future__ import annotations

import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from csi_disk.errors import FailedPrecondition
from csi_disk.host import filesystems, mounts
from csi_disk.host.devices import device_size_bytes, rescan

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

MiB = 1024 * 1024
XFS_MIB = 320  # mkfs.xfs refuses anything smaller than 300 MB


def tool(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()


def blkid_type(device: str) -> str:
    return tool("blkid", "-p", "-s", "TYPE", "-o", "value", device)


def findmnt(target: Path, column: str) -> str:
    return tool("findmnt", "-n", "-o", column, "--mountpoint", str(target))


def has_cap_sys_resource() -> bool:
    status = Path("/proc/self/status").read_text()
    effective = next(line for line in status.splitlines() if line.startswith("CapEff:"))
    return bool(int(effective.split()[1], 16) & (1 << 24))


def first_mib(device: str) -> bytes:
    with open(device, "rb") as f:
        return f.read(MiB)


def backing_file(device: str) -> Path:
    return Path(tool("losetup", "-n", "-O", "BACK-FILE", device))


@pytest.mark.parametrize(("fstype", "size_mib"), [("ext4", 64), ("ext3", 64), ("xfs", XFS_MIB)])
def test_format_then_mount_and_measure(
    fstype: str, size_mib: int, loop_device: Callable[..., str], host_dir: Path
) -> None:
    dev = loop_device(size_mib)
    assert filesystems.probe(dev).is_blank
    filesystems.format(dev, fstype)
    assert blkid_type(dev) == fstype
    assert filesystems.probe(dev).fstype == fstype

    target = host_dir / "mnt"
    target.mkdir()
    mounts.mount(dev, target, fstype, ["noatime"])
    try:
        assert findmnt(target, "FSTYPE") == fstype
        assert "noatime" in findmnt(target, "OPTIONS").split(",")
        found = mounts.find_mount(target)
        assert found is not None and found.fstype == fstype
        assert mounts.is_mount_point(target)
        assert [m.mount_point for m in mounts.mounts_of_device(dev)] == [str(target)]

        (target / "data").write_bytes(b"x" * MiB)
        usage = filesystems.stats(target)
        assert 0 < usage.total_bytes <= size_mib * MiB
        assert usage.used_bytes >= MiB
        assert usage.available_bytes < usage.total_bytes
        assert usage.total_inodes > usage.used_inodes > 0
    finally:
        mounts.unmount(target)
    assert not mounts.is_mount_point(target)
    assert findmnt(target, "TARGET") == ""


def test_ext4_disables_features_old_kernels_cannot_mount(loop_device: Callable[..., str]) -> None:
    dev = loop_device(64)
    filesystems.format(dev, "ext4", filesystems.parse_mkfs_options("-L data", "ext4"))
    features = tool("dumpe2fs", "-h", dev)
    assert "Filesystem volume name:   data" in features
    feature_line = next(
        line for line in features.splitlines() if line.startswith("Filesystem features")
    )
    assert "orphan_file" not in feature_line
    assert "metadata_csum_seed" not in feature_line
    assert "Reserved block count:     0" in features


def test_existing_filesystem_is_never_reformatted(loop_device: Callable[..., str]) -> None:
    dev = loop_device(XFS_MIB)
    subprocess.run(["mkfs.xfs", "-q", "-L", "keep", dev], check=True)
    uuid = tool("blkid", "-p", "-s", "UUID", "-o", "value", dev)
    with pytest.raises(FailedPrecondition, match="xfs"):
        filesystems.format(dev, "ext4")
    with pytest.raises(FailedPrecondition):
        filesystems.format(dev, "xfs")
    assert blkid_type(dev) == "xfs"
    assert tool("blkid", "-p", "-s", "UUID", "-o", "value", dev) == uuid


def _write_mbr(device: str) -> None:
    """One Linux partition from sector 2048 to the end, written without any tool."""
    sectors = device_size_bytes(device) // 512
    entry = struct.pack(
        "<B3sB3sII", 0, b"\x00\x02\x00", 0x83, b"\xff\xff\xff", 2048, sectors - 2048
    )
    with open(device, "r+b") as f:
        f.seek(446)
        f.write(entry + b"\x00" * 48 + b"\x55\xaa")


def _write_lvm_label(device: str) -> None:
    """An LVM2 physical volume label in sector 1, with the checksum blkid verifies."""
    label = bytearray(512)
    label[0:8] = b"LABELONE"
    label[8:16] = struct.pack("<Q", 1)
    label[20:24] = struct.pack("<I", 32)
    label[24:32] = b"LVM2 001"
    crc = zlib.crc32(bytes(label[20:]), 0xF597A6CF ^ 0xFFFFFFFF) ^ 0xFFFFFFFF
    label[16:20] = struct.pack("<I", crc)
    with open(device, "r+b") as f:
        f.seek(512)
        f.write(label)


@pytest.mark.parametrize("kind", ["partition table", "swap", "LVM"])
def test_other_signatures_are_never_formatted(kind: str, loop_device: Callable[..., str]) -> None:
    dev = loop_device(64)
    if kind == "partition table":
        _write_mbr(dev)
        expected = tool("blkid", "-p", "-s", "PTTYPE", "-o", "value", dev)
        assert expected == "dos"
    elif kind == "swap":
        subprocess.run(["mkswap", dev], capture_output=True, check=True)
        expected = blkid_type(dev)
        assert expected == "swap"
    else:
        _write_lvm_label(dev)
        expected = blkid_type(dev)
        assert expected == "LVM2_member"
    before = first_mib(dev)
    found = filesystems.probe(dev)
    assert not found.is_blank
    assert found.fstype == ""
    with pytest.raises(FailedPrecondition, match="refusing"):
        filesystems.format(dev, "ext4")
    # Nothing was written: same bytes, and the independent probe sees the same signature.
    assert first_mib(dev) == before
    column = "PTTYPE" if kind == "partition table" else "TYPE"
    assert tool("blkid", "-p", "-s", column, "-o", "value", dev) == expected


def test_ambivalent_probe_counts_as_data(loop_device: Callable[..., str]) -> None:
    dev, donor = loop_device(XFS_MIB), loop_device(64)
    subprocess.run(["mkfs.xfs", "-q", dev], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", donor], check=True)
    # An ext4 superblock at 1 KiB next to the xfs one at 0: two valid filesystems.
    with open(donor, "rb") as f:
        f.seek(1024)
        superblock = f.read(1024)
    with open(dev, "r+b") as f:
        f.seek(1024)
        f.write(superblock)
    result = subprocess.run(["blkid", "-p", dev], capture_output=True, text=True, check=False)
    assert result.returncode == 8, result.stderr
    found = filesystems.probe(dev)
    assert found.ambivalent
    assert not found.is_blank
    before = first_mib(dev)
    with pytest.raises(FailedPrecondition, match="conflicting"):
        filesystems.format(dev, "ext4")
    assert first_mib(dev) == before


def test_read_only_bind_mount_is_read_only(loop_device: Callable[..., str], host_dir: Path) -> None:
    dev = loop_device(64)
    filesystems.format(dev, "ext4")
    staging, publish = host_dir / "staging", host_dir / "publish"
    staging.mkdir()
    publish.mkdir()
    mounts.mount(dev, staging, "ext4")
    try:
        (staging / "file").write_text("hello")
        mounts.bind_mount(staging, publish, read_only=True, options=["nosuid"])
        try:
            options = findmnt(publish, "OPTIONS").split(",")
            assert "ro" in options and "nosuid" in options
            assert (publish / "file").read_text() == "hello"
            with pytest.raises(OSError, match="Read-only"):
                (publish / "other").write_text("no")
            assert "rw" in findmnt(staging, "OPTIONS").split(",")
            assert len(mounts.mounts_of_device(dev)) == 2
        finally:
            mounts.unmount(publish)
    finally:
        mounts.unmount(staging)
    # Unmounting again, or a path that never existed, is already done.
    mounts.unmount(staging)
    mounts.unmount(host_dir / "never-existed")


def test_busy_unmount_fails_instead_of_going_lazy(
    loop_device: Callable[..., str], host_dir: Path
) -> None:
    dev = loop_device(64)
    filesystems.format(dev, "ext4")
    target = host_dir / "busy"
    target.mkdir()
    mounts.mount(dev, target, "ext4")
    handle = open(target / "held", "w")  # noqa: SIM115 - held open on purpose
    try:
        with pytest.raises(FailedPrecondition, match="in use"):
            mounts.unmount(target)
        assert findmnt(target, "TARGET") == str(target)
    finally:
        handle.close()
        mounts.unmount(target)


@pytest.mark.parametrize(("fstype", "size_mib"), [("ext4", 64), ("xfs", XFS_MIB)])
def test_grow_after_the_disk_grew(
    fstype: str, size_mib: int, loop_device: Callable[..., str], host_dir: Path
) -> None:
    dev = loop_device(size_mib)
    filesystems.format(dev, fstype)
    target = host_dir / "grow"
    target.mkdir()
    mounts.mount(dev, target, fstype)
    try:
        before = filesystems.stats(target).total_bytes
        subprocess.run(["truncate", "-s", f"{size_mib * 2}M", str(backing_file(dev))], check=True)
        rescan(dev)
        assert device_size_bytes(dev) == size_mib * 2 * MiB
        assert int(tool("blockdev", "--getsize64", dev)) == size_mib * 2 * MiB
        if fstype != "xfs" and not has_cap_sys_resource():
            # Online ext resize needs CAP_SYS_RESOURCE: without it the error must say so.
            with pytest.raises(FailedPrecondition, match="CAP_SYS_RESOURCE"):
                filesystems.grow(dev, target, fstype)
            return
        filesystems.grow(dev, target, fstype)
        after = filesystems.stats(target).total_bytes
        assert after > before * 1.8
        assert (
            int(tool("stat", "-f", "-c", "%b", str(target)))
            * int(tool("stat", "-f", "-c", "%S", str(target)))
            == after
        )
    finally:
        mounts.unmount(target)


def test_grow_unmounted_ext4_checks_first(loop_device: Callable[..., str]) -> None:
    dev = loop_device(64)
    filesystems.format(dev, "ext4")
    subprocess.run(["truncate", "-s", "128M", str(backing_file(dev))], check=True)
    rescan(dev)
    filesystems.grow(dev, None, "ext4")
    block_count = next(
        int(line.split(":")[1])
        for line in tool("dumpe2fs", "-h", dev).splitlines()
        if line.startswith("Block count:")
    )
    block_size = next(
        int(line.split(":")[1])
        for line in tool("dumpe2fs", "-h", dev).splitlines()
        if line.startswith("Block size:")
    )
    assert block_count * block_size == 128 * MiB
    assert filesystems.block_stats(dev).total_bytes == 128 * MiB


def test_unmounted_xfs_cannot_grow(loop_device: Callable[..., str]) -> None:
    dev = loop_device(XFS_MIB)
    with pytest.raises(FailedPrecondition, match="mounted"):
        filesystems.grow(dev, None, "xfs")


def test_fsck_clean_and_damaged(loop_device: Callable[..., str]) -> None:
    dev = loop_device(64)
    filesystems.format(dev, "ext4")
    assert filesystems.fsck(dev, "ext4") == 0
    assert filesystems.fsck(dev, "xfs") == 0
    # Zero the primary superblock and the group descriptors: -p must refuse to guess.
    with open(dev, "r+b") as f:
        f.seek(1024)
        f.write(b"\x00" * (64 * 1024))
    with pytest.raises(FailedPrecondition, match="e2fsck"):
        filesystems.fsck(dev, "ext4")
