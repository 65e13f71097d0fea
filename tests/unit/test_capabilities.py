"""The one capability check shared by CreateVolume, Validate and Publish."""

from __future__ import annotations

import pytest

from csi_disk import capabilities
from csi_disk.capabilities import check, check_all
from csi_disk.csi_pb import csi_pb2
from csi_disk.errors import InvalidArgument
from csi_disk.fstypes import DEFAULT_FS_TYPE, FS_TYPES, check_fs_type

Mode = csi_pb2.VolumeCapability.AccessMode


def mount(
    mode: int = Mode.SINGLE_NODE_WRITER, fs: str = "", *flags: str
) -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type=fs, mount_flags=list(flags)),
        access_mode=Mode(mode=mode),
    )


def block(mode: int = Mode.SINGLE_NODE_WRITER) -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        block=csi_pb2.VolumeCapability.BlockVolume(), access_mode=Mode(mode=mode)
    )


def test_every_single_node_mode_is_served_for_mount_and_block() -> None:
    for mode in capabilities.SINGLE_NODE_MODES:
        check(mount(mode), multi_attach=False)
        check(block(mode), multi_attach=False)
    assert Mode.SINGLE_NODE_MULTI_WRITER in capabilities.SINGLE_NODE_MODES


@pytest.mark.parametrize("mode", sorted(capabilities.MULTI_NODE_MODES))
def test_multi_node_only_for_multi_attach_block(mode: int) -> None:
    check(block(mode), multi_attach=True)
    with pytest.raises(InvalidArgument, match="multiAttach"):
        check(block(mode), multi_attach=False)
    with pytest.raises(InvalidArgument, match="block"):
        check(mount(mode), multi_attach=True)


@pytest.mark.parametrize("fs", ["", *FS_TYPES, "EXT4", "Xfs"])
def test_supported_filesystems(fs: str) -> None:
    check(mount(Mode.SINGLE_NODE_WRITER, fs), multi_attach=False)
    assert check_fs_type(fs) in FS_TYPES


def test_fs_type_defaults_and_names_the_field_it_refuses() -> None:
    assert check_fs_type("") == DEFAULT_FS_TYPE == "ext4"
    assert check_fs_type("XFS") == "xfs"
    with pytest.raises(InvalidArgument, match=r"mount\.fs_type 'btrfs' is not supported"):
        check_fs_type("btrfs", "mount.fs_type")


@pytest.mark.parametrize(
    ("cap", "match"),
    [
        (mount(Mode.SINGLE_NODE_WRITER, "btrfs"), "btrfs"),
        (mount(Mode.SINGLE_NODE_WRITER, "ext4", "bind,remount"), "bind"),
        (mount(Mode.SINGLE_NODE_WRITER, "ext4", "x;y"), "x;y"),
        (mount(Mode.SINGLE_NODE_WRITER, "ext4", "nobarrier"), "nobarrier"),
        (mount(Mode.SINGLE_NODE_WRITER, "ext4", "ro\nrw"), "control"),
        (mount(Mode.UNKNOWN), "UNKNOWN"),
        (mount(99), "99"),
        (csi_pb2.VolumeCapability(access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER)), "access type"),
    ],
)
def test_refused(cap: csi_pb2.VolumeCapability, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        check(cap, multi_attach=True)


def test_volume_mount_group_is_refused() -> None:
    cap = mount()
    cap.mount.volume_mount_group = "2000"
    with pytest.raises(InvalidArgument, match="volume_mount_group"):
        check(cap, multi_attach=False)


def test_allowed_mount_flags_pass() -> None:
    check(mount(Mode.SINGLE_NODE_WRITER, "ext4", "noatime,nodiscard", "nosuid"), multi_attach=False)


def test_check_all_needs_one_and_names_the_bad_one() -> None:
    with pytest.raises(InvalidArgument, match="required"):
        check_all([], multi_attach=False)
    with pytest.raises(InvalidArgument, match=r"volume_capabilities\[1\]"):
        check_all([mount(), mount(Mode.UNKNOWN)], multi_attach=False)


def test_node_uses_the_shared_constants() -> None:
    from csi_disk import controller, node

    assert node.published_serial is capabilities.published_serial
    assert capabilities.publish_context("2ze1") == {"serial": "2ze1", "serialNumber": "2ze1"}
    assert not hasattr(controller, "PUBLISH_SERIAL_KEY")
