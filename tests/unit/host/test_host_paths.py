"""Volume id and target path validation: what reaches mount(8) and ECS must be sane."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csi_disk.errors import FailedPrecondition, InvalidArgument, NotFound
from csi_disk.host.paths import (
    create_file_inside,
    make_dirs_inside,
    resolve_inside,
    validate_target_path,
)
from csi_disk.volume_ids import validate_volume_id

KUBELET = Path("/var/lib/kubelet")


@pytest.mark.parametrize("volume_id", ["d-2ze6szkj0e6s0hsl6w5d", "d-bp1abc", "d-12"])
def test_well_formed_disk_ids_pass(volume_id: str) -> None:
    assert validate_volume_id(volume_id) == volume_id


@pytest.mark.parametrize(
    ("volume_id", "reason"),
    [
        ("", "required"),
        ("d-" + "a" * 127, "longer"),
        ("d-abc\x00", "control"),
        ("d-abc\n", "control"),
    ],
)
def test_malformed_ids_are_invalid_argument(volume_id: str, reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason):
        validate_volume_id(volume_id)


@pytest.mark.parametrize(
    "volume_id",
    ["d-abc/def", "d-abc\\def", "d-..abc", "d-abc def", "vol-abcdef", "D-ABCDEF", "d-a"],
)
def test_ids_no_disk_can_have_are_not_found(volume_id: str) -> None:
    """Path separators and '..' never reach a path: such an id names no disk."""
    with pytest.raises(NotFound, match="not an ECS disk id"):
        validate_volume_id(volume_id)


def test_error_names_the_field() -> None:
    with pytest.raises(InvalidArgument, match="source_volume_id"):
        validate_volume_id("", field="source_volume_id")


@given(st.text(max_size=200))
def test_accepted_ids_are_always_disk_shaped(text: str) -> None:
    try:
        result = validate_volume_id(text)
    except (InvalidArgument, NotFound):
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


# --- where a path really leads: links planted in the kubelet directory -------------------


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A kubelet directory with ``pods/`` and a directory outside it."""
    kubelet = tmp_path / "kubelet"
    (kubelet / "pods").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    return kubelet, outside


def test_plain_path_resolves_to_itself_even_when_missing(tree: tuple[Path, Path]) -> None:
    kubelet, _ = tree
    path = kubelet / "pods" / "p1" / "volumes" / "mount"
    assert resolve_inside(path, kubelet) == path
    assert not (kubelet / "pods" / "p1").exists()  # checking creates nothing


def test_linked_kubelet_dir_itself_is_fine(tmp_path: Path, tree: tuple[Path, Path]) -> None:
    kubelet, _ = tree
    alias = tmp_path / "alias"
    alias.symlink_to(kubelet)
    assert resolve_inside(alias / "pods" / "x", alias) == kubelet / "pods" / "x"


def test_link_that_stays_inside_is_followed(tree: tuple[Path, Path]) -> None:
    kubelet, _ = tree
    (kubelet / "pods" / "short").symlink_to(kubelet / "pods")
    got = resolve_inside(kubelet / "pods" / "short" / "x" / "globalmount", kubelet)
    assert got == kubelet / "pods" / "x" / "globalmount"


@pytest.mark.parametrize("dangling", [False, True])
def test_link_in_an_ancestor_leading_outside_is_refused(
    tree: tuple[Path, Path], dangling: bool
) -> None:
    kubelet, outside = tree
    destination = outside / "gone" if dangling else outside
    (kubelet / "pods" / "evil").symlink_to(destination)
    with pytest.raises(InvalidArgument, match=r"staging_target_path.*outside"):
        resolve_inside(kubelet / "pods" / "evil" / "globalmount", kubelet, "staging_target_path")


def test_path_leading_back_to_the_kubelet_dir_itself_is_refused(
    tmp_path: Path, tree: tuple[Path, Path]
) -> None:
    kubelet, _ = tree
    (kubelet / "pods" / "up").symlink_to(tmp_path)
    with pytest.raises(InvalidArgument, match="outside"):
        resolve_inside(kubelet / "pods" / "up" / "kubelet", kubelet)


@pytest.mark.parametrize("inside", [False, True])
def test_path_that_is_itself_a_link_is_refused(tree: tuple[Path, Path], inside: bool) -> None:
    kubelet, outside = tree
    leaf = kubelet / "pods" / "mount"
    leaf.symlink_to(kubelet / "pods" if inside else outside / "missing")
    with pytest.raises(InvalidArgument, match=r"target_path.*symbolic link"):
        resolve_inside(leaf, kubelet)
    assert resolve_inside(leaf, kubelet, leaf_link_ok=True) == leaf  # returned, not followed


def test_make_dirs_creates_each_missing_level(tree: tuple[Path, Path]) -> None:
    kubelet, _ = tree
    path = kubelet / "pods" / "p1" / "volumes" / "mount"
    make_dirs_inside(path, kubelet)
    make_dirs_inside(path, kubelet)  # a repeat is a no-op
    assert path.is_dir() and not path.is_symlink()


def test_make_dirs_through_an_escaping_link_creates_nothing(tree: tuple[Path, Path]) -> None:
    kubelet, outside = tree
    (kubelet / "pods" / "evil").symlink_to(outside / "made")
    with pytest.raises(InvalidArgument, match="outside"):
        make_dirs_inside(kubelet / "pods" / "evil" / "globalmount", kubelet)
    assert list(outside.iterdir()) == []


def test_make_dirs_onto_a_file_is_failed_precondition(tree: tuple[Path, Path]) -> None:
    kubelet, _ = tree
    (kubelet / "pods" / "file").write_text("")
    with pytest.raises(FailedPrecondition, match="not a directory"):
        make_dirs_inside(kubelet / "pods" / "file" / "mount", kubelet)


def test_create_file_makes_a_regular_file_and_tolerates_one(tree: tuple[Path, Path]) -> None:
    kubelet, _ = tree
    path = kubelet / "pods" / "p1" / "volumeDevices" / "pv1"
    create_file_inside(path, kubelet)
    create_file_inside(path, kubelet)
    assert path.is_file() and not path.is_symlink()


def test_create_file_never_follows_a_dangling_link(tree: tuple[Path, Path]) -> None:
    kubelet, outside = tree
    leaf = kubelet / "pods" / "dev"
    leaf.symlink_to(outside / "created")
    with pytest.raises(InvalidArgument, match="symbolic link"):
        create_file_inside(leaf, kubelet)
    assert not (outside / "created").exists()


def test_create_file_onto_a_directory_is_failed_precondition(tree: tuple[Path, Path]) -> None:
    kubelet, _ = tree
    (kubelet / "pods" / "dir").mkdir()
    with pytest.raises(FailedPrecondition, match="not a regular file"):
        create_file_inside(kubelet / "pods" / "dir", kubelet)


_names = st.sampled_from(["a", "b", "in", "out", "loop"])


@given(st.lists(_names, min_size=1, max_size=5))
def test_resolved_paths_never_leave_the_kubelet_dir(parts: list[str]) -> None:
    """Whatever the walk through a tree of inside/outside links, an accepted path is inside."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        kubelet = root / "kubelet"
        (kubelet / "a" / "b").mkdir(parents=True)
        (root / "elsewhere").mkdir()
        (kubelet / "in").symlink_to(kubelet / "a")
        (kubelet / "a" / "out").symlink_to(root / "elsewhere")
        (kubelet / "a" / "b" / "loop").symlink_to(kubelet / "a" / "b" / "loop")
        path = kubelet.joinpath(*parts)
        try:
            got = resolve_inside(path, kubelet)
        except InvalidArgument:
            return
        real = Path(os.path.realpath(got))
        assert real.is_relative_to(kubelet) and real != kubelet
