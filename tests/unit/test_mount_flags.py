"""The mount flag allow-list shared by the controller's checks and the node."""

from __future__ import annotations

import pytest

from csi_disk.errors import InvalidArgument
from csi_disk.mount_flags import check_mount_flags, split_flags


def test_split_flags_keeps_quoted_commas() -> None:
    got = split_flags('noatime, context="system_u:object_r:container_file_t:s0:c1,c2",ro')
    assert got == ["noatime", 'context="system_u:object_r:container_file_t:s0:c1,c2"', "ro"]


@pytest.mark.parametrize(
    "flags",
    [
        ["ro", "noatime", "nodiratime", "nosuid", "nodev", "noexec"],
        ["data=ordered", "barrier=1", "commit=30", "errors=remount-ro"],
        ["barrier", "noatime"],
        ["nouuid", "logbufs=8", "logbsize=256k", "inode64", "largeio", "prjquota"],
        ['context="system_u:object_r:container_file_t:s0:c1,c2"'],
        ["fscontext=system_u:object_r:container_file_t:s0", "noatime,lazytime"],
    ],
)
def test_allowed_flags_pass(flags: list[str]) -> None:
    got = check_mount_flags(flags)
    assert ",".join(got) == ",".join(split_flags(",".join(flags)))


@pytest.mark.parametrize(
    "flag",
    [
        "norecovery",
        "nobarrier",
        "barrier=0",
        "barrier=00",
        "errors=panic",
        "uid=0",
        "data=bogus",
        "commit=abc",
        "bind",
        "remount",
        "loop=/dev/loop0",
        "context=../../etc",
        'context="a:b:c:s0";rm',
        "noatime\n",
    ],
)
def test_other_flags_are_invalid_argument_naming_the_flag(flag: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_mount_flags(["noatime", flag])
    assert repr(flag.strip()) in caught.value.message or "control" in caught.value.message
