"""Shape checks for ids and names the controller is handed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csi_disk.errors import InvalidArgument
from csi_disk.volume_ids import (
    validate_instance_id,
    validate_name,
    validate_snapshot_id,
    validate_volume_id,
)

BAD_IDS = ["", "a/../b", "..", "x\n", "x\x00", "\u0661", " ", "x" * 200, "UPPER", "a\\b"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_malformed_ids_are_invalid(bad: str) -> None:
    for prefix, check in (("d-", validate_volume_id), ("s-", validate_snapshot_id)):
        with pytest.raises(InvalidArgument):
            check(prefix + bad if bad else bad)
    with pytest.raises(InvalidArgument, match="node_id"):
        validate_instance_id("i-" + bad if bad else bad)


def test_well_formed_ids_pass() -> None:
    assert validate_volume_id("d-bp1a2b3c4d5e6f7g8h9i") == "d-bp1a2b3c4d5e6f7g8h9i"
    assert validate_snapshot_id("s-bp1a2b3c4d5e6f7g8h9i") == "s-bp1a2b3c4d5e6f7g8h9i"
    assert validate_instance_id("i-bp67acfmxazb4p") == "i-bp67acfmxazb4p"
    with pytest.raises(InvalidArgument):
        validate_volume_id("s-bp1a2b3c")  # a snapshot id is no volume id
    with pytest.raises(InvalidArgument, match="source_volume_id"):
        validate_volume_id("", "source_volume_id")


@given(st.text(max_size=80))
def test_messages_never_carry_control_characters(text: str) -> None:
    for check in (validate_volume_id, validate_snapshot_id, validate_instance_id, validate_name):
        try:
            check(text)
        except InvalidArgument as err:
            assert all(c.isprintable() for c in err.message)


def test_names() -> None:
    assert validate_name("pvc-0d6e3c2a-7a5e-4c6b-9d0e-2f0b1b7e9a11")
    assert validate_name("卷" * 42)  # 126 bytes
    for bad in ("", "卷" * 43, "a\nb", "a\u2029b", "a\u200fb", "a\x1bb"):
        with pytest.raises(InvalidArgument, match="name"):
            validate_name(bad)
