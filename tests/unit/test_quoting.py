"""The one way a caller's value reaches an error message or a log line."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from csi_disk.quoting import MAX_SHOWN, quote, shorten


def test_short_values_are_shown_whole_and_quoted() -> None:
    assert quote("pvc-1") == "'pvc-1'"
    assert quote(Path("/var/lib/kubelet/x")) == "'/var/lib/kubelet/x'"
    assert quote("x" * MAX_SHOWN) == repr("x" * MAX_SHOWN)


def test_long_values_keep_their_ends_and_say_how_much_was_cut() -> None:
    path = "/var/lib/kubelet/pods/" + "a" * 1000 + "/volumes/pvc-1/mount"
    shown = shorten(path)
    assert shown.startswith("/var/lib/kubelet/pods/aaa")
    assert shown.endswith("/volumes/pvc-1/mount")
    assert f"<{len(path) - MAX_SHOWN} characters cut>" in shown


def test_control_and_format_characters_are_escaped() -> None:
    shown = quote("a\nforged line\u202eevil\u2028")
    assert "\n" not in shown and "\u202e" not in shown and "\u2028" not in shown
    assert "\\n" in shown and "\\u202e" in shown


@given(st.text(max_size=5000))
def test_no_value_shows_more_than_its_bound(text: str) -> None:
    shown = quote(text)
    assert shown.isprintable()
    # 128 characters of the value (each escaped to at most 10), quotes and the cut mark.
    assert len(shown) <= MAX_SHOWN * 10 + 60
    if len(text) <= MAX_SHOWN:
        assert shown == repr(text)
