"""blkid export parsing, probe verdicts, mkfs option parsing and mkfs command lines."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csi_disk.errors import DeadlineExceeded, InvalidArgument, NotFound
from csi_disk.host import filesystems
from csi_disk.host.filesystems import (
    Probe,
    ext_mkfs_argv,
    parse_blkid_export,
    parse_mkfs_options,
    xfs_mkfs_argv,
)
from csi_disk.host.run import CommandFailed, Result


def test_blkid_export_is_parsed_with_escapes() -> None:
    text = (
        "DEVNAME=/dev/loop3\nUUID=1234-abcd\nLABEL=my\\ data\\=x\n"
        "BLOCK_SIZE=4096\nTYPE=ext4\nUSAGE=filesystem\n\nnot a pair\n"
    )
    values = parse_blkid_export(text)
    assert values["TYPE"] == "ext4"
    assert values["LABEL"] == "my data=x"
    assert values["USAGE"] == "filesystem"
    assert "not a pair" not in values


@pytest.mark.parametrize(
    ("found", "blank", "fstype", "words"),
    [
        (Probe(), True, "", "nothing"),
        (Probe(type="xfs", usage="filesystem"), False, "xfs", "xfs"),
        (Probe(type="swap", usage="other"), False, "", "swap"),
        (Probe(type="LVM2_member", usage="raid"), False, "", "LVM2_member"),
        (Probe(pttype="dos"), False, "", "dos partition table"),
        (Probe(ambivalent=True), False, "", "conflicting"),
    ],
)
def test_probe_verdicts(found: Probe, blank: bool, fstype: str, words: str) -> None:
    assert found.is_blank is blank
    assert found.fstype == fstype
    assert words in found.describe()


def test_a_filesystem_the_driver_does_not_make_is_refused_before_any_program_runs() -> None:
    with pytest.raises(InvalidArgument, match="filesystem 'btrfs' is not supported"):
        filesystems.format("/dev/null", "btrfs")
    with pytest.raises(InvalidArgument, match="btrfs"):
        parse_mkfs_options("-b 4096", "btrfs")


@pytest.mark.parametrize(
    ("text", "fstype", "expected"),
    [
        ("-b 4096 -i 8192", "ext4", ["-b", "4096", "-i", "8192"]),
        ("-m0 -O ^has_journal", "ext3", ["-m", "0", "-O", "^has_journal"]),
        (
            "-L 'my data' -E stride=16,stripe_width=32",
            "ext4",
            ["-L", "my data", "-E", "stride=16,stripe_width=32"],
        ),
        (
            "-m crc=1,finobt=1 -i size=512 -n ftype=1",
            "xfs",
            ["-m", "crc=1,finobt=1", "-i", "size=512", "-n", "ftype=1"],
        ),
        ("", "xfs", []),
    ],
)
def test_allowed_mkfs_options(text: str, fstype: str, expected: list[str]) -> None:
    assert parse_mkfs_options(text, fstype) == expected


@pytest.mark.parametrize(
    ("text", "fstype", "named"),
    [
        ("-F", "ext4", "-F"),
        ("-b 4096 /dev/sda", "ext4", "/dev/sda"),
        ("-L x; rm -rf /", "ext4", "x;"),
        ("-L $(reboot)", "ext4", "$(reboot)"),
        ("-L `id`", "ext4", "`id`"),
        ("-d name=/dev/sdb", "xfs", "/dev/sdb"),
        ("-l logdev=/dev/sdc", "xfs", "/dev/sdc"),
        ("-J device=/dev/sdd", "ext4", "/dev/sdd"),
        ("-T", "ext4", "-T"),
        ("-b -L", "ext4", "-b"),
        ("-E", "xfs", "-E"),
        ("-K", "xfs", "-K"),
        ("-L 'unterminated", "ext4", "parsed"),
        ("-L a|b", "ext4", "a|b"),
        ("-L a&b", "ext4", "a&b"),
    ],
)
def test_disallowed_mkfs_options_name_the_word(text: str, fstype: str, named: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_mkfs_options(text, fstype)
    assert named in caught.value.message


_word = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12)


@given(st.lists(_word, max_size=6), st.sampled_from(["ext4", "ext3", "xfs"]))
def test_parsed_options_are_always_flag_value_pairs_without_danger(
    words: list[str], fstype: str
) -> None:
    text = " ".join(words)
    try:
        got = parse_mkfs_options(text, fstype)
    except InvalidArgument:
        return
    allowed = filesystems._allowed_options(fstype)
    assert len(got) % 2 == 0
    for flag, value in zip(got[::2], got[1::2], strict=True):
        assert flag in allowed
        assert value and not value.startswith("-")
        assert "/" not in value
        assert not set(";|&$`<>") & set(value)


def test_ext_argv_pins_safe_defaults_and_merges_caller_options() -> None:
    argv = ext_mkfs_argv("ext4", "/dev/x", ["-E", "stride=4", "-O", "^64bit", "-b", "4096"])
    assert argv[:3] == ["mkfs.ext4", "-F", "-m0"]
    assert argv[-1] == "/dev/x"
    assert argv.count("-E") == 1 and argv.count("-O") == 1
    extended = argv[argv.index("-E") + 1].split(",")
    assert extended[:3] == ["lazy_itable_init=1", "lazy_journal_init=1", "nodiscard"]
    assert extended[-1] == "stride=4"
    features = argv[argv.index("-O") + 1].split(",")
    assert features[-1] == "^64bit"
    assert argv[argv.index("-b") + 1] == "4096"


def test_caller_feature_choice_replaces_our_pin() -> None:
    argv = ext_mkfs_argv("ext4", "/dev/x", ["-O", "orphan_file"])
    features = argv[argv.index("-O") + 1].split(",")
    assert "^orphan_file" not in features
    assert "orphan_file" in features


def test_xfs_argv_does_not_respecify_caller_suboptions() -> None:
    argv = xfs_mkfs_argv("/dev/x", ["-m", "bigtime=1", "-L", "data"])
    assert argv[:3] == ["mkfs.xfs", "-f", "-K"]
    assert argv.count("-m") == 1
    meta = argv[argv.index("-m") + 1].split(",")
    assert "bigtime=1" in meta and "bigtime=0" not in meta
    assert argv[argv.index("-L") + 1] == "data"
    assert argv[-1] == "/dev/x"


def _fake_blkid(monkeypatch: pytest.MonkeyPatch, code: int, out: str = "", err: str = "") -> None:
    def fake_run(argv: list[str], **_: object) -> Result:
        assert argv[:4] == ["blkid", "-p", "-o", "export"]
        return Result(code, out, err)

    monkeypatch.setattr(filesystems, "run", fake_run)


def test_probe_nothing_found_is_blank(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_blkid(monkeypatch, 2)
    assert filesystems.probe("/dev/x").is_blank


def test_probe_ambivalent_by_code_or_message_is_data(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_blkid(monkeypatch, 8, err="ambivalent result")
    assert not filesystems.probe("/dev/x").is_blank
    _fake_blkid(monkeypatch, 1, err="/dev/x: ambivalent result (probably more filesystems)")
    assert filesystems.probe("/dev/x").ambivalent


def test_probe_reads_type_and_partition_table(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_blkid(monkeypatch, 0, out="DEVNAME=/dev/x\nPTUUID=ab\nPTTYPE=gpt\n")
    found = filesystems.probe("/dev/x")
    assert (found.pttype, found.type, found.is_blank) == ("gpt", "", False)


def test_probe_failure_is_an_error_not_blank(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_blkid(monkeypatch, 4, err="blkid: cannot open /dev/x: Permission denied")
    with pytest.raises(CommandFailed, match="Permission denied"):
        filesystems.probe("/dev/x")


def test_stats_of_missing_path_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        filesystems.stats(tmp_path / "absent")


def test_stats_of_a_directory(tmp_path: Path) -> None:
    got = filesystems.stats(tmp_path)
    assert got.total_bytes >= got.available_bytes >= 0
    assert got.total_bytes > 0


def test_stats_on_a_hung_path_gives_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    release = threading.Event()

    def hung_statvfs(path: object) -> None:
        release.wait(10)
        raise OSError("released")

    monkeypatch.setattr(filesystems.os, "statvfs", hung_statvfs)
    try:
        with pytest.raises(DeadlineExceeded, match="statvfs"):
            filesystems.stats(tmp_path, timeout=0.1)
    finally:
        release.set()


def test_format_rechecks_options_before_touching_the_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_run(argv: list[str], **_: object) -> Result:
        raise AssertionError(f"nothing may run, got {argv}")

    monkeypatch.setattr(filesystems, "run", no_run)
    with pytest.raises(InvalidArgument, match="/dev/sdb"):
        filesystems.format("/dev/x", "ext4", ["-L", "ok", "/dev/sdb"])
    with pytest.raises(InvalidArgument, match="btrfs"):
        filesystems.format("/dev/x", "btrfs")
