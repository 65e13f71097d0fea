"""Checks for ids and names the driver is handed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csi_disk.errors import InvalidArgument, NotFound
from csi_disk.volume_ids import (
    check_id,
    is_disk_id,
    is_instance_id,
    is_snapshot_id,
    validate_instance_id,
    validate_name,
    validate_snapshot_id,
    validate_volume_id,
)

VALIDATORS = (
    (validate_volume_id, "d-"),
    (validate_snapshot_id, "s-"),
    (validate_instance_id, "i-"),
)
# Truly malformed: empty, longer than 128 characters, control or format characters.
MALFORMED = ["", "x\n", "x\x00", "x\u200f", "x\u2028", "x" * 129]
# Printable ids that could name no ECS resource: csi-sanity's, paths, other alphabets.
NOT_ECS = ["fake-vol-id-1", "a/../b", "..", "\u0661", " ", "UPPER", "a\\b", "x" * 126]


@pytest.mark.parametrize("bad", MALFORMED)
def test_malformed_ids_are_invalid(bad: str) -> None:
    for check, prefix in VALIDATORS:
        with pytest.raises(InvalidArgument, match="some_field"):
            check(prefix + bad if bad else bad, "some_field")
        with pytest.raises(InvalidArgument):
            check_id(bad, "some_field")


@pytest.mark.parametrize("other", NOT_ECS)
def test_ids_ecs_cannot_have_are_not_found(other: str) -> None:
    for check, prefix in VALIDATORS:
        for text in (other, prefix + other):
            with pytest.raises(NotFound, match="does not exist"):
                check(text)
            assert check_id(text, "some_field") == text  # not malformed, only nameless
    assert not is_disk_id(other) and not is_snapshot_id(other) and not is_instance_id(other)


def test_well_formed_ids_pass() -> None:
    assert validate_volume_id("d-bp1a2b3c4d5e6f7g8h9i") == "d-bp1a2b3c4d5e6f7g8h9i"
    assert validate_snapshot_id("s-bp1a2b3c4d5e6f7g8h9i") == "s-bp1a2b3c4d5e6f7g8h9i"
    assert validate_instance_id("i-bp67acfmxazb4p") == "i-bp67acfmxazb4p"
    with pytest.raises(NotFound, match="not an ECS disk id"):
        validate_volume_id("s-bp1a2b3c")  # a snapshot id names no volume
    with pytest.raises(InvalidArgument, match="source_volume_id"):
        validate_volume_id("", "source_volume_id")


@given(st.text(max_size=200))
def test_every_id_is_accepted_invalid_or_not_found(text: str) -> None:
    """Whatever the text, the answer is the id itself (shaped like an ECS id, so safe in
    paths and calls), INVALID_ARGUMENT or NOT_FOUND; never another error."""
    try:
        result = validate_volume_id(text)
    except (InvalidArgument, NotFound):
        return
    assert result == text and result.startswith("d-")
    assert all(c.isascii() and (c.isdigit() or c.islower() or c == "-") for c in result)


@given(st.text(max_size=80))
def test_messages_never_carry_control_characters(text: str) -> None:
    for check in (validate_volume_id, validate_snapshot_id, validate_instance_id, validate_name):
        try:
            check(text)
        except (InvalidArgument, NotFound) as err:
            assert all(c.isprintable() for c in err.message)


def test_messages_quote_ids_whole_up_to_their_length_limit() -> None:
    longest = "fake-" + "y" * 120 + "END"  # 128 characters: the most an id may have
    with pytest.raises(NotFound) as err:
        validate_volume_id(longest)
    assert repr(longest) in err.value.message


def test_names() -> None:
    assert validate_name("pvc-0d6e3c2a-7a5e-4c6b-9d0e-2f0b1b7e9a11")
    assert validate_name("卷" * 42)  # 126 bytes
    for bad in ("", "卷" * 43, "a\nb", "a\u2029b", "a\u200fb", "a\x1bb"):
        with pytest.raises(InvalidArgument, match="name"):
            validate_name(bad)
