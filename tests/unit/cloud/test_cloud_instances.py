"""Instance facts: one DescribeInstances per instance per while, dropped when ECS says so."""

from __future__ import annotations

import threading

import pytest

from csi_disk.cloud import instances, port
from csi_disk.cloud.instances import InstanceFacts
from tests.ecs_codes import ecs_error
from tests.fakes import InMemoryCloud
from tests.waiting import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cloud() -> InMemoryCloud:
    c = InMemoryCloud()
    c.add_instance("i-a", "cn-hangzhou-h")
    return c


def test_an_instance_is_described_once_per_ttl(cloud: InMemoryCloud) -> None:
    clock = Clock()
    facts = InstanceFacts(cloud, ttl=30.0, clock=clock)
    for _ in range(5):
        instance = facts.get("i-a")
        assert instance is not None and instance.zone == "cn-hangzhou-h"
    assert facts.get("i-gone") is None and facts.get("i-gone") is None
    assert cloud.calls["describe_instance"] == 2
    clock.now += 30.0
    cloud.set_instance_status("i-a", port.STOPPED)
    assert facts.get("i-a").status == port.STOPPED  # type: ignore[union-attr]
    assert cloud.calls["describe_instance"] == 3


def test_a_fresh_look_asks_ecs_and_keeps_the_answer(cloud: InMemoryCloud) -> None:
    facts = InstanceFacts(cloud, clock=Clock())
    assert facts.get("i-a").status == port.RUNNING  # type: ignore[union-attr]
    cloud.set_instance_status("i-a", port.STOPPED)
    assert facts.get("i-a").status == port.RUNNING  # type: ignore[union-attr]
    assert facts.get("i-a", fresh=True).status == port.STOPPED  # type: ignore[union-attr]
    assert facts.get("i-a").status == port.STOPPED  # type: ignore[union-attr]
    assert cloud.calls["describe_instance"] == 2


@pytest.mark.parametrize(
    ("code", "dropped"),
    [
        ("IncorrectInstanceStatus", True),
        ("InvalidInstanceId.NotFound", True),
        ("IncorrectDiskStatus", False),
        ("Throttling", False),
    ],
)
def test_an_error_saying_the_instance_changed_drops_it(
    cloud: InMemoryCloud, code: str, dropped: bool
) -> None:
    facts = InstanceFacts(cloud, clock=Clock())
    facts.get("i-a")
    facts.note(ecs_error(code, "", "AttachDisk"), "i-a")
    facts.get("i-a")
    assert cloud.calls["describe_instance"] == (2 if dropped else 1)


def test_callers_asking_together_share_one_call(cloud: InMemoryCloud) -> None:
    entered = threading.Event()
    release = threading.Event()
    original = cloud.describe_instance

    def slow(instance_id: str) -> port.Instance | None:
        entered.set()
        release.wait(10)
        return original(instance_id)

    cloud.describe_instance = slow  # type: ignore[method-assign]
    facts = InstanceFacts(cloud, ttl=0.0)  # nothing kept: only sharing saves calls
    results: list[port.Instance | None] = []
    first = threading.Thread(target=lambda: results.append(facts.get("i-a")))
    first.start()
    assert entered.wait(10)
    others = [threading.Thread(target=lambda: results.append(facts.get("i-a"))) for _ in range(5)]
    for t in others:
        t.start()
    wait_until(lambda: facts._lookups["i-a"].followers == 5, "five callers joined the lookup")
    release.set()
    for t in [first, *others]:
        t.join()
    assert len(results) == 6 and all(r is not None and r.id == "i-a" for r in results)
    assert cloud.calls["describe_instance"] == 1


def test_a_failed_lookup_is_not_remembered(cloud: InMemoryCloud) -> None:
    facts = InstanceFacts(cloud, clock=Clock())
    cloud.fail("describe_instance", ecs_error("Throttling", "", "DescribeInstances"))
    with pytest.raises(Exception, match="Throttling"):
        facts.get("i-a")
    assert facts.get("i-a") is not None
    assert cloud.calls["describe_instance"] == 2


def test_what_is_kept_is_bounded_expired_entries_first(
    cloud: InMemoryCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(instances, "MAX_INSTANCES", 3)
    clock = Clock()
    facts = InstanceFacts(cloud, ttl=30.0, clock=clock)
    facts.get("i-1")
    facts.get("i-2")
    clock.now += 20
    facts.get("i-3")
    clock.now += 15  # i-1 and i-2 are past their ttl, i-3 is not
    facts.get("i-4")
    assert sorted(facts._seen) == ["i-3", "i-4"]
    facts.get("i-5")
    facts.get("i-6")  # all fresh: the oldest kept gives way
    assert sorted(facts._seen) == ["i-4", "i-5", "i-6"]
    asked = cloud.calls["describe_instance"]
    facts.get("i-5")
    assert cloud.calls["describe_instance"] == asked
    facts.get("i-3")
    assert cloud.calls["describe_instance"] == asked + 1
