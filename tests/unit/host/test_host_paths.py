"""Volume id and target path validation: what reaches mount(8) and ECS must be sane."""

from __future__ import annotations

import posixpath
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csi_disk.errors import InvalidArgument
from csi_disk.host.paths import validate_target_path, validate_volume_id

KUBELET = Path("/var/lib/kubelet")


@pytest.mark.parametrize("volume_id", ["d-2ze6szkj0e6s0hsl6w5d", "d-bp1abc", "d-12"])
def test_well_formed_disk_ids_pass(volume_id: str) -> None:
    assert validate_volume_id(volume_id) == volume_id


@pytest.mark.parametrize(
    ("volume_id", "reason"),
    [
        ("", "required"),
        ("d-" + "a" * 127, "longer"),
        ("d-abc/def", "separator"),
        ("d-abc\\def", "separator"),
        ("d-..abc", "separator"),
        ("d-abc def", "whitespace"),
        ("d-abc\x00", "control"),
        ("d-abc\n", "control"),
        ("vol-abcdef", "not an ECS disk id"),
        ("D-ABCDEF", "not an ECS disk id"),
        ("d-a", "not an ECS disk id"),
    ],
)
def test_malformed_ids_are_invalid_argument(volume_id: str, reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason):
        validate_volume_id(volume_id)


def test_error_names_the_field() -> None:
    with pytest.raises(InvalidArgument, match="source_volume_id"):
        validate_volume_id("", field="source_volume_id")


@given(st.text(max_size=200))
def test_accepted_ids_are_always_disk_shaped(text: str) -> None:
    try:
        result = validate_volume_id(text)
    except InvalidArgument:
        return
    assert result.startswith("d-")
    assert "/" not in result and ".." not in result
    assert all(c.isascii() and (c.isdigit() or c.islower() or c == "-") for c in result)


@given(st.from_regex(r"d-[a-z0-9]{2,64}", fullmatch=True))
def test_every_disk_shaped_id_is_accepted(text: str) -> None:
    assert validate_volume_id(text) == text


def test_target_inside_kubelet_dir_is_normalised() -> None:
    got = validate_target_path("/var/lib/kubelet/pods/x//volumes/./mount/", KUBELET)
    assert got == Path("/var/lib/kubelet/pods/x/volumes/mount")


@pytest.mark.parametrize(
    "path",
    [
        "",
        "relative/path",
        "/var/lib/kubelet",
        "/var/lib/kubelet/../../etc",
        "/var/lib/kubelet/pods/../../../etc",
        "/var/lib/kubeletX/pods",
        "/etc/passwd",
        "/var/lib/kubelet/pods/a\x00b",
        "/var/lib/kubelet/pods/a\nb",
        "//var/lib/kubelet/pods/x",
    ],
)
def test_unsafe_target_paths_are_rejected(path: str) -> None:
    with pytest.raises(InvalidArgument, match="staging_target_path"):
        validate_target_path(path, KUBELET, field="staging_target_path")


_segment = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0x2FF), max_size=8)


@given(st.lists(_segment, max_size=6))
def test_accepted_paths_never_escape_kubelet_dir(segments: list[str]) -> None:
    path = "/var/lib/kubelet/" + "/".join(segments)
    try:
        got = validate_target_path(path, KUBELET)
    except InvalidArgument:
        return
    text = str(got)
    assert text.startswith("/var/lib/kubelet/")
    assert posixpath.normpath(text) == text
    assert ".." not in got.parts
    assert not any(ord(c) < 32 for c in text)
