"""Category size table and capacity fitting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csi_disk.categories import (
    CATEGORIES,
    DEFAULT_SIZE_GIB,
    GIB,
    fit_size,
    max_size_gib,
    size_range,
)
from csi_disk.errors import InvalidArgument, OutOfRange


@pytest.mark.parametrize(
    ("name", "pl", "lo", "hi"),
    [
        ("cloud", "", 5, 2000),
        ("cloud_efficiency", "", 20, 32768),
        ("cloud_ssd", "", 20, 32768),
        ("cloud_essd", "", 20, 65536),
        ("cloud_essd", "PL0", 1, 65536),
        ("cloud_essd", "PL1", 20, 65536),
        ("cloud_essd", "PL2", 461, 65536),
        ("cloud_essd", "PL3", 1261, 65536),
        ("cloud_essd_entry", "", 10, 32768),
        ("cloud_auto", "", 1, 65536),
    ],
)
def test_size_table(name: str, pl: str, lo: int, hi: int) -> None:
    r = size_range(name, pl)
    assert (r.min_gib, r.max_gib) == (lo, hi)
    assert max_size_gib(name, pl) == hi


def test_unknown_category_and_level_are_invalid() -> None:
    with pytest.raises(InvalidArgument, match="unknown disk category"):
        size_range("cloud_magic")
    with pytest.raises(InvalidArgument, match="PL1"):
        size_range("cloud_ssd", "PL1")


def test_rounds_up_to_whole_gib() -> None:
    assert fit_size("cloud_auto", "", 1, 0) == 1
    assert fit_size("cloud_auto", "", 5 * GIB + 1, 0) == 6
    assert fit_size("cloud_auto", "", 5 * GIB, 0) == 5


def test_raises_to_category_minimum() -> None:
    assert fit_size("cloud_essd", "PL2", 10 * GIB, 0) == 461
    assert fit_size("cloud_ssd", "", GIB, 0) == 20


def test_minimum_not_raised_when_auto_size_is_off() -> None:
    with pytest.raises(OutOfRange, match="volumeSizeAutoAvailable"):
        fit_size("cloud_ssd", "", GIB, 0, raise_to_minimum=False)
    assert fit_size("cloud_ssd", "", 30 * GIB, 0, raise_to_minimum=False) == 30


def test_default_size_when_no_range() -> None:
    assert fit_size("cloud_auto", "", 0, 0) == DEFAULT_SIZE_GIB
    assert fit_size("cloud_auto", "", 0, 5 * GIB) == 5
    assert fit_size("cloud_essd", "PL2", 0, 0) == 461


def test_limit_below_minimum_is_out_of_range() -> None:
    with pytest.raises(OutOfRange, match="limit"):
        fit_size("cloud_ssd", "", GIB, 10 * GIB)
    with pytest.raises(OutOfRange):
        fit_size("cloud_auto", "", 0, GIB // 2)


def test_limit_inside_the_rounded_gib_is_out_of_range() -> None:
    with pytest.raises(OutOfRange):
        fit_size("cloud_auto", "", 5 * GIB + 1, 5 * GIB + 100)


def test_above_category_maximum_is_out_of_range() -> None:
    with pytest.raises(OutOfRange, match="at most 2000"):
        fit_size("cloud", "", 2001 * GIB, 0)


def test_required_above_limit_and_negative_are_invalid() -> None:
    with pytest.raises(InvalidArgument):
        fit_size("cloud_auto", "", 10 * GIB, 5 * GIB)
    with pytest.raises(InvalidArgument):
        fit_size("cloud_auto", "", -1, 0)


attempts = st.sampled_from(
    [(name, "") for name in CATEGORIES]
    + [("cloud_essd", pl) for pl in ("PL0", "PL1", "PL2", "PL3")]
)


@given(attempts, st.integers(0, 70000 * GIB), st.integers(0, 70000 * GIB))
def test_fit_size_satisfies_the_range(attempt: tuple[str, str], req: int, lim: int) -> None:
    name, pl = attempt
    try:
        size = fit_size(name, pl, req, lim)
    except InvalidArgument:
        assert lim and req > lim
        return
    except OutOfRange:
        return
    limits = size_range(name, pl)
    assert limits.min_gib <= size <= limits.max_gib
    assert size * GIB >= req
    if lim:
        assert size * GIB <= lim
    if req:
        # never more than needed beyond the category minimum
        assert size == max(-(-req // GIB), limits.min_gib)
