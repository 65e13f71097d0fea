"""Attach/detach rules shared by both attach modes, against the in-memory ECS."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from csi_disk.attach import Attacher
from csi_disk.cloud import port
from csi_disk.cloud.waiter import DiskWaiter
from csi_disk.config import Config
from csi_disk.errors import Aborted, FailedPrecondition, NotFound
from tests.fakes import InMemoryCloud

ZONE = "cn-hangzhou-h"
OTHER_ZONE = "cn-hangzhou-i"


@pytest.fixture
def cloud() -> InMemoryCloud:
    c = InMemoryCloud()
    c.add_instance("i-here", ZONE)
    c.add_instance("i-there", ZONE)
    c.add_instance("i-far", OTHER_ZONE)
    return c


@pytest.fixture
def waiter(cloud: InMemoryCloud) -> Iterator[DiskWaiter]:
    w = DiskWaiter(cloud, interval=0.01)
    yield w
    w.close()


def make(cloud: InMemoryCloud, waiter: DiskWaiter, **config: object) -> Attacher:
    settings: dict[str, object] = {"operation_timeout": 2.0, **config}
    return Attacher(cloud, waiter, Config(**settings))  # type: ignore[arg-type]


def test_attach_reaches_in_use_through_the_waiter(cloud: InMemoryCloud, waiter: DiskWaiter) -> None:
    cloud.latency = 2
    disk = cloud.add_disk()
    got = make(cloud, waiter).attach(disk.id, "i-here")
    assert got.status == port.IN_USE
    assert cloud.disk(disk.id).attachments == ("i-here",)


def test_attach_when_already_attached_makes_no_attach_call(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-here",))
    make(cloud, waiter).attach(disk.id, "i-here")
    assert cloud.calls["attach_disk"] == 0


def test_unknown_disk_and_unknown_instance_are_not_found(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    attacher = make(cloud, waiter)
    with pytest.raises(NotFound, match="disk"):
        attacher.attach("d-nosuchdisk", "i-here")
    disk = cloud.add_disk()
    with pytest.raises(NotFound, match="instance"):
        attacher.attach(disk.id, "i-gone")


def test_other_zone_is_refused_without_a_cloud_attach(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    disk = cloud.add_disk(zone=ZONE)
    with pytest.raises(FailedPrecondition, match="zone"):
        make(cloud, waiter).attach(disk.id, "i-far")
    assert cloud.calls["attach_disk"] == 0


def test_disk_on_a_running_instance_is_not_taken(cloud: InMemoryCloud, waiter: DiskWaiter) -> None:
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-there",))
    with pytest.raises(FailedPrecondition, match="i-there"):
        make(cloud, waiter).attach(disk.id, "i-here")
    assert cloud.disk(disk.id).attachments == ("i-there",)
    assert cloud.calls["detach_disk"] == 0


def test_disk_on_a_stopped_instance_is_moved(cloud: InMemoryCloud, waiter: DiskWaiter) -> None:
    cloud.set_instance_status("i-there", port.STOPPED)
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-there",))
    make(cloud, waiter).attach(disk.id, "i-here")
    assert cloud.disk(disk.id).attachments == ("i-here",)


def test_takeover_from_a_running_instance_only_when_allowed(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-there",))
    make(cloud, waiter, allow_takeover=True).attach(disk.id, "i-here")
    assert cloud.disk(disk.id).attachments == ("i-here",)


def test_multi_attach_disk_joins_other_holders(cloud: InMemoryCloud, waiter: DiskWaiter) -> None:
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-there",), multi_attach=True)
    make(cloud, waiter).attach(disk.id, "i-here")
    assert set(cloud.disk(disk.id).attachments) == {"i-there", "i-here"}


def test_stuck_attach_is_undone_and_aborted(cloud: InMemoryCloud, waiter: DiskWaiter) -> None:
    cloud.stuck_attach.add("i-here")
    disk = cloud.add_disk()
    with pytest.raises(Aborted, match="undone"):
        make(cloud, waiter, operation_timeout=0.3).attach(disk.id, "i-here")
    assert cloud.calls["detach_disk"] == 1
    assert not cloud.disk(disk.id).attached_to("i-here")


def test_detach_waits_until_detached_and_tolerates_absence(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    cloud.latency = 2
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-here",))
    attacher = make(cloud, waiter)
    attacher.detach(disk.id, "i-here")
    assert cloud.disk(disk.id).status == port.AVAILABLE
    assert cloud.disk(disk.id).attachments == ()
    attacher.detach(disk.id, "i-here")  # already detached
    attacher.detach("d-nosuchdisk", "i-here")  # gone
    assert cloud.calls["detach_disk"] == 1


def test_concurrent_attaches_to_one_instance_are_serialised(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    # The fake, like ECS, answers a conflict when a second attach starts on an instance
    # that is still attaching one: all succeed only if the attacher queues them.
    cloud.latency = 2
    disks = [cloud.add_disk() for _ in range(4)]
    attacher = make(cloud, waiter, operation_timeout=10.0)
    failures: list[BaseException] = []

    def attach(disk_id: str) -> None:
        try:
            attacher.attach(disk_id, "i-here")
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=attach, args=(d.id,)) for d in disks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert all(cloud.disk(d.id).attachments == ("i-here",) for d in disks)
    assert cloud.calls["attach_disk"] == 4
