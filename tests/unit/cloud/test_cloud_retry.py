"""Retry policy and backoff bounds."""

from __future__ import annotations

import random

import pytest

from csi_disk.cloud.errors import EcsError, from_ecs_code
from csi_disk.cloud.retry import RetryPolicy, call_with_retry, should_retry


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(codes: list[str], result: str = "ok"):
    """A call that fails with ``codes`` in order, then returns ``result``."""
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if codes:
            raise from_ecs_code(codes.pop(0), "canned")
        return result

    return fn, calls


@pytest.mark.parametrize("retry", range(10))
def test_backoff_stays_within_half_and_full_step(retry: int) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    step = min(4.0, 0.5 * 2**retry)
    rng = random.Random(retry)
    delays = [policy.backoff(retry, rng) for _ in range(200)]
    assert all(step / 2 <= d <= step for d in delays)
    assert len({round(d, 6) for d in delays}) > 1  # jittered, not constant


@pytest.mark.parametrize(
    ("code", "idempotent", "expected"),
    [
        ("Throttling", False, True),
        ("ServiceUnavailable", False, True),
        ("InternalError", True, True),
        ("InternalError", False, False),
        ("InvalidDiskId.NotFound", True, False),
        ("IncorrectDiskStatus", True, False),
        ("InvalidSecurityToken.Expired", True, False),
    ],
)
def test_should_retry_matrix(code: str, idempotent: bool, expected: bool) -> None:
    assert should_retry(from_ecs_code(code, ""), idempotent=idempotent) is expected


def test_idempotent_call_retries_until_success() -> None:
    t = FakeTime()
    fn, calls = failing(["Throttling", "InternalError"])
    assert (
        call_with_retry(fn, idempotent=True, policy=RetryPolicy(), sleep=t.sleep, clock=t.clock)
        == "ok"
    )
    assert calls["n"] == 3
    assert len(t.sleeps) == 2


def test_non_idempotent_call_is_not_retried_on_internal_error() -> None:
    t = FakeTime()
    fn, calls = failing(["InternalError"])
    with pytest.raises(EcsError) as info:
        call_with_retry(fn, idempotent=False, policy=RetryPolicy(), sleep=t.sleep, clock=t.clock)
    assert info.value.ecs_code == "InternalError"
    assert calls["n"] == 1
    assert t.sleeps == []


def test_non_idempotent_call_is_retried_when_ecs_throttled_it() -> None:
    t = FakeTime()
    fn, calls = failing(["Throttling.User"])
    assert (
        call_with_retry(fn, idempotent=False, policy=RetryPolicy(), sleep=t.sleep, clock=t.clock)
        == "ok"
    )
    assert calls["n"] == 2


def test_attempts_are_bounded() -> None:
    t = FakeTime()
    fn, calls = failing(["InternalError"] * 20)
    with pytest.raises(EcsError):
        call_with_retry(
            fn,
            idempotent=True,
            policy=RetryPolicy(max_attempts=4, total_timeout=1e9),
            sleep=t.sleep,
            clock=t.clock,
        )
    assert calls["n"] == 4


def test_throttled_attempts_count_only_against_the_total_time() -> None:
    """ECS did nothing with a throttled call: it is tried again until the time is up, not
    until the attempts are."""
    t = FakeTime()
    fn, calls = failing(["Throttling"] * 6 + ["InternalError"] * 2)
    policy = RetryPolicy(max_attempts=3, base_delay=0.1, max_delay=0.5, total_timeout=60.0)
    assert call_with_retry(fn, idempotent=True, policy=policy, sleep=t.sleep, clock=t.clock) == "ok"
    assert calls["n"] == 9
    fn, calls = failing(["InternalError"] * 3)
    with pytest.raises(EcsError):
        call_with_retry(fn, idempotent=True, policy=policy, sleep=t.sleep, clock=t.clock)
    assert calls["n"] == 3


def test_total_time_is_bounded() -> None:
    t = FakeTime()
    fn, calls = failing(["Throttling"] * 50)
    policy = RetryPolicy(max_attempts=50, base_delay=1.0, max_delay=8.0, total_timeout=20.0)
    with pytest.raises(EcsError):
        call_with_retry(fn, idempotent=True, policy=policy, sleep=t.sleep, clock=t.clock)
    assert sum(t.sleeps) <= 20.0
    assert calls["n"] < 50


def test_other_exceptions_pass_through_untouched() -> None:
    def fn() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        call_with_retry(fn, idempotent=True, policy=RetryPolicy(), sleep=lambda s: None)
