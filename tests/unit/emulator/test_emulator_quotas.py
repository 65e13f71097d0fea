"""The emulator's API quotas: ECS's minute windows, per action, and its latency settings."""

from __future__ import annotations

import pytest

from csi_disk.cloud import quotas as driver
from csi_disk_emulator.cli import parse_latency
from csi_disk_emulator.errors import CATALOGUE, EcsError
from csi_disk_emulator.quotas import Quotas


class Clock:
    def __init__(self) -> None:
        self.now = 6000.0  # the start of a minute

    def __call__(self) -> float:
        return self.now


def test_defaults_are_the_drivers() -> None:
    quotas = Quotas()
    assert quotas.quota("CreateDisk") == driver.DEFAULT_PER_MINUTE
    for action, per_minute in driver.DEFAULT_QUOTAS.items():
        assert quotas.quota(action) == per_minute


def test_a_spent_action_is_throttled_until_the_next_wall_clock_minute() -> None:
    clock = Clock()
    quotas = Quotas({"AttachDisk": 2}, clock=clock)
    quotas.admit("AttachDisk")
    clock.now += 50
    quotas.admit("AttachDisk")
    with pytest.raises(EcsError) as caught:
        quotas.admit("AttachDisk")
    assert (caught.value.code, caught.value.status) == ("Throttling", 400)
    assert caught.value.message == CATALOGUE["Throttling"][1]
    quotas.admit("DetachDisk")  # other actions are counted on their own
    clock.now += 9.9  # still minute T
    with pytest.raises(EcsError):
        quotas.admit("AttachDisk")
    clock.now += 0.1  # minute T+1: the whole quota again, however recent the last call
    quotas.admit("AttachDisk")
    quotas.admit("AttachDisk")
    assert quotas.throttled_calls() == {"AttachDisk": 2}
    assert quotas.used() == {"AttachDisk": 2}


def test_zero_lifts_a_quota_and_none_restores_the_default() -> None:
    quotas = Quotas({"*": 0})
    for _ in range(1000):
        quotas.admit("DescribeDisks")
    quotas.set({"*": None, "DescribeDisks": 1})
    assert quotas.quota("CreateDisk") == 500
    quotas.new_minute()
    quotas.admit("DescribeDisks")
    with pytest.raises(EcsError):
        quotas.admit("DescribeDisks")
    quotas.set({"DescribeDisks": None, "DescribeInstanceTypes": None})
    assert quotas.quotas() == {"*": 500, "DescribeInstanceTypes": 400}


def test_latency_flag_sets_each_transition() -> None:
    latency = parse_latency("create=1, attach=2,detach=0.5", 0.1)
    assert (latency.create, latency.attach, latency.detach, latency.scale) == (1, 2, 0.5, 0.1)
    assert latency.snapshot == 5.0  # not named: the default


@pytest.mark.parametrize("text", ["attach", "boot=1", "attach=soon", "attach=-1", "scale=2"])
def test_latency_flag_refuses_what_it_cannot_use(text: str) -> None:
    with pytest.raises(ValueError, match="latency"):
        parse_latency(text, 1.0)
