"""mountinfo parsing."""

from __future__ import annotations

from pathlib import Path

from csi_disk.host.mounts import find_mount, parse_mountinfo, unescape

SAMPLE = (
    "22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro\n"
    "36 22 7:3 / /var/lib/kubelet/plugins/staging\\040dir rw,noatime shared:5 master:2"
    " - xfs /dev/loop3 rw,attr2,inode64\n"
    "37 22 7:3 /sub /var/lib/kubelet/pods/p/vol ro,relatime - xfs /dev/loop3 rw,attr2\n"
    "38 22 0:5 / /dev rw,nosuid - devtmpfs udev rw,size=10k\n"
    "this line is garbage\n"
    "39 22 0:44 / /tmp/tab\\011and\\134slash rw - tmpfs none rw\n"
)


def test_parses_every_field() -> None:
    mounts = parse_mountinfo(SAMPLE)
    assert [m.mount_id for m in mounts] == [22, 36, 37, 38, 39]
    staged = mounts[1]
    assert staged.parent_id == 22
    assert (staged.major, staged.minor) == (7, 3)
    assert staged.root == "/"
    assert staged.mount_point == "/var/lib/kubelet/plugins/staging dir"
    assert staged.options == ("rw", "noatime")
    assert staged.optional_fields == ("shared:5", "master:2")
    assert staged.fstype == "xfs"
    assert staged.source == "/dev/loop3"
    assert staged.super_options == ("rw", "attr2", "inode64")
    assert not staged.read_only
    assert mounts[2].read_only
    assert mounts[2].root == "/sub"
    assert mounts[2].optional_fields == ()


def test_escapes_are_undone() -> None:
    assert parse_mountinfo(SAMPLE)[-1].mount_point == "/tmp/tab\tand\\slash"
    assert unescape("a\\040b\\012c") == "a b\nc"
    assert unescape("no\\escape") == "no\\escape"


def test_find_mount_returns_topmost(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    info = tmp_path / "mountinfo"
    info.write_text(
        f"40 22 7:1 / {target} rw - ext4 /dev/loop1 rw\n"
        f"41 40 7:2 / {target} ro - ext4 /dev/loop2 rw\n"
        f"42 22 7:2 / {target}/other rw - ext4 /dev/loop2 rw\n"
    )
    found = find_mount(target, info)
    assert found is not None and found.mount_id == 41
    assert find_mount(tmp_path, info) is None
