"""Per-action ECS budgets: calls per minute, foreground first, back-off after Throttling."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from csi_disk.cloud.quotas import (
    DEFAULT_PER_MINUTE,
    ActionBudget,
    ApiQuotas,
    background,
    in_background,
    parse_quotas,
)
from csi_disk.errors import Unavailable
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(30)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def budget(per_minute: int, clock: Clock, **options: Any) -> ActionBudget:
    return ActionBudget("CreateDisk", per_minute, clock=clock, **options)


def test_parse_quotas_reads_actions_and_the_default() -> None:
    assert parse_quotas("") == {}
    assert parse_quotas("CreateDisk=300, *=500,DescribeDisks=0") == {
        "CreateDisk": 300,
        "*": 500,
        "DescribeDisks": 0,
    }


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("CreateDisk", "expected Action=calls-per-minute"),
        ("CreateDisk=", "expected Action=calls-per-minute"),
        ("createDisk=5", "not an ECS action name"),
        ("Create Disk=5", "not an ECS action name"),
        ("CreateDisk=-1", "whole number"),
        ("CreateDisk=1.5", "whole number"),
        ("CreateDisk=1,CreateDisk=2", "twice"),
    ],
)
def test_parse_quotas_names_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_quotas(text)


def test_defaults_are_the_public_figures_and_flags_override_them() -> None:
    quotas = ApiQuotas()
    assert quotas.per_minute("CreateDisk") == DEFAULT_PER_MINUTE == 500
    assert quotas.per_minute("DescribeInstanceTypes") == 400
    quotas = ApiQuotas.from_text("AttachDisk=60,*=100")
    assert quotas.per_minute("AttachDisk") == 60
    assert quotas.per_minute("CreateDisk") == 100
    assert quotas.per_minute("DescribeInstanceTypes") == 400
    assert quotas.budget("AttachDisk") is quotas.budget("AttachDisk")
    assert quotas.budget("AttachDisk") is not quotas.budget("DetachDisk")


def test_a_minutes_quota_goes_at_once_then_waits_for_the_window() -> None:
    clock = Clock()
    b = budget(3, clock, window=60.0)
    for _ in range(3):
        assert b.acquire() == clock.now
        clock.now += 1.0
    # Three calls started at 1000, 1001, 1002: the fourth may start once the first is
    # a whole window old, and no sooner.
    assert b.next_start(clock.now) == 1060.0
    clock.now = 1060.0
    assert b.next_start(clock.now) == 1060.0
    assert b.acquire() == 1060.0
    assert b.next_start(clock.now) == 1061.0


def test_no_limit_means_no_wait() -> None:
    clock = Clock()
    b = budget(0, clock)
    for _ in range(10_000):
        b.acquire()
    assert b.next_start(clock.now) == clock.now


def test_throttling_paces_the_action_then_it_speeds_up_call_by_call() -> None:
    clock = Clock()
    b = budget(500, clock, window=60.0, first_gap=1.0, max_gap=8.0)
    sent = [b.acquire() for _ in range(10)]
    clock.now += 0.1
    b.throttled(sent[-1])
    assert b.gap == 1.0
    assert b.next_start(clock.now) == clock.now + 1.0
    for straggler in sent[:-1]:  # the rest of the burst answers Throttling too
        b.throttled(straggler)
    assert b.gap == 1.0  # and says nothing new

    clock.now = b.next_start(clock.now)
    probe = b.acquire()
    assert b.next_start(clock.now) == clock.now + 1.0  # one call at a time
    clock.now += 0.2
    b.throttled(probe)  # refused again: wait longer
    assert b.gap == 2.0
    assert b.next_start(clock.now) == clock.now + 2.0

    gaps = []
    while b.gap:
        clock.now = b.next_start(clock.now)
        b.acquire()
        clock.now += 0.05
        b.answered()
        gaps.append(b.gap)
    # Each call ECS takes quarters the gap, until calls are as fast as the quota allows
    # (500 a minute: 0.12 s apart) and pacing ends.
    assert gaps == [0.5, 0.125, 0.0]
    assert b.next_start(clock.now) == clock.now


def test_probe_gap_stops_doubling_at_its_bound() -> None:
    clock = Clock()
    b = budget(0, clock, first_gap=1.0, max_gap=4.0)
    for _ in range(6):
        clock.now = b.next_start(clock.now)
        b.throttled(b.acquire())
    assert b.next_start(clock.now) == clock.now + 4.0


def test_throttling_slows_only_its_own_action() -> None:
    quotas = ApiQuotas()
    quotas.budget("DescribeDisks").throttled(0.0)
    assert quotas.budget("DescribeDisks").gap
    assert not quotas.budget("CreateDisk").gap


def test_a_call_that_finds_no_place_in_time_is_unavailable() -> None:
    b = ActionBudget("AttachDisk", 1, window=60.0)
    b.acquire()
    with pytest.raises(Unavailable, match=r"AttachDisk.*1 calls a minute is spent"):
        b.acquire(max_wait=0.05)
    assert b.waiting == 0


def test_calls_a_user_waits_for_go_before_background_polling() -> None:
    """A full budget with a background poll queued first: the foreground call that came
    later still starts first."""
    b = ActionBudget("DescribeDisks", 1, window=1.0)
    b.acquire()
    order: list[str] = []

    def call(name: str, in_bg: bool) -> None:
        b.acquire(background=in_bg, max_wait=10)
        order.append(name)

    poll = threading.Thread(target=call, args=("poll", True))
    poll.start()
    wait_until(lambda: b.waiting == 1, "the poll queued")
    user = threading.Thread(target=call, args=("user", False))
    user.start()
    wait_until(lambda: b.waiting == 2, "the user's call queued behind it")
    poll.join()
    user.join()
    assert order == ["user", "poll"]


def test_waiters_of_one_priority_go_in_arrival_order() -> None:
    b = ActionBudget("CreateDisk", 1, window=0.2)
    b.acquire()
    order: list[int] = []
    threads = []
    for n in range(4):
        t = threading.Thread(target=lambda n=n: (b.acquire(max_wait=10), order.append(n)))
        t.start()
        # Queued (or, on a slow machine, already through) before the next one starts.
        wait_until(lambda n=n: b.waiting + len(order) == n + 1, f"call {n} queued")
        threads.append(t)
    for t in threads:
        t.join()
    assert order == [0, 1, 2, 3]


def test_background_marks_only_the_calls_inside_it() -> None:
    assert not in_background()
    with background():
        assert in_background()
        seen: list[bool] = []
        other = threading.Thread(target=lambda: seen.append(in_background()))
        other.start()
        other.join()
        assert seen == [False]  # another thread is not in this one's background
    assert not in_background()
