"""The safe format-and-mount policy over the host port (the node handler's tests cover it
through NodeStageVolume; these pin its decisions one by one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from csi_disk.errors import FailedPrecondition, Unavailable
from csi_disk.host.filesystems import Probe
from csi_disk.host.safe_mount import SafeFormatAndMount
from tests.fakes import FakeHost

DISK = "d-0123456789abcdef"
TARGET = Path("/var/lib/kubelet/staging/x")


@pytest.fixture
def host() -> FakeHost:
    fake = FakeHost(None)
    fake.plug(DISK)
    return fake


def stage(
    host: FakeHost,
    fstype: str = "ext4",
    flags: tuple[str, ...] = (),
    *,
    read_only: bool = False,
    omit_fsck: bool = False,
    checked: list[int] | None = None,
) -> None:
    """Stage DISK at TARGET; ``checked`` records how many mounts preceded each target check."""
    checks = [] if checked is None else checked
    SafeFormatAndMount(host).mount(
        DISK,
        host.device_path(DISK),
        TARGET,
        fstype=fstype,
        flags=list(flags),
        mkfs_options=[],
        read_only=read_only,
        omit_fsck=omit_fsck,
        check_target=lambda: checks.append(len(host.mount_calls)),
    )


def test_a_blank_disk_is_formatted_then_mounted_and_neither_checked_nor_grown(
    host: FakeHost,
) -> None:
    checked: list[int] = []
    stage(host, "xfs", checked=checked)
    assert [f[1] for f in host.formatted] == ["xfs"]
    assert host.mount_calls[0][2:] == ("xfs", ("nouuid",))  # clones share a UUID
    assert checked == [0], "the target is checked right before mount(8), once"
    assert not host.fscked and not host.grown


@pytest.mark.parametrize(
    "found",
    [
        Probe(type="xfs", usage="filesystem"),
        Probe(pttype="gpt"),
        Probe(type="LVM2_member", usage="raid"),
        Probe(ambivalent=True),
    ],
)
def test_anything_on_the_disk_but_the_filesystem_asked_for_is_left_untouched(
    host: FakeHost, found: Probe
) -> None:
    host.contents[str(host.device_path(DISK))] = found
    with pytest.raises(FailedPrecondition, match=r"never reformatted|left untouched"):
        stage(host, "ext4")
    assert not host.formatted and not host.mount_calls and not host.fscked


def test_an_existing_ext3_serves_ext4_checked_and_grown_before_and_after_mounting(
    host: FakeHost,
) -> None:
    device = str(host.device_path(DISK))
    host.contents[device] = Probe(type="ext3", usage="filesystem")
    host.ext_sizes[device] = 1 << 30  # smaller than its disk
    stage(host, "ext4")
    assert not host.formatted
    assert host.fscked == [device]
    assert host.mount_calls[0][2] == "ext3"
    assert host.grown_offline == [True, False]


@pytest.mark.parametrize(
    ("flags", "options"),
    [((), {"read_only": True}), (("ro",), {}), ((), {"omit_fsck": True})],
)
def test_no_fsck_on_a_read_only_volume_or_when_the_class_says_so(
    host: FakeHost, flags: tuple[str, ...], options: dict[str, bool]
) -> None:
    host.contents[str(host.device_path(DISK))] = Probe(type="ext4", usage="filesystem")
    stage(host, "ext4", flags, **options)
    assert not host.fscked
    assert host.mount_calls


def test_a_filesystem_that_cannot_grow_still_mounts(host: FakeHost) -> None:
    host.contents[str(host.device_path(DISK))] = Probe(type="xfs", usage="filesystem")
    host.grow_error = Unavailable("xfs_growfs is not there")
    stage(host, "xfs")
    assert host.mount_calls and not host.grown
