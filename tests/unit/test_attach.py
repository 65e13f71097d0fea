"""Attach/detach rules shared by both attach modes, against the in-memory ECS."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from csi_disk.attach import Attacher
from csi_disk.cloud import port
from csi_disk.cloud.port import Disk, DiskRequest
from csi_disk.cloud.waiter import DiskWaiter
from csi_disk.config import Config
from csi_disk.errors import Aborted, DeadlineExceeded, DriverError, FailedPrecondition, NotFound
from tests.fakes import InMemoryCloud, ecs_error
from tests.unit.controller_helpers import cloud_with, running_waiter

ZONE = "cn-hangzhou-h"
OTHER_ZONE = "cn-hangzhou-i"


@pytest.fixture
def cloud() -> InMemoryCloud:
    return cloud_with(("i-here", ZONE), ("i-there", ZONE), ("i-far", OTHER_ZONE))


@pytest.fixture
def waiter(cloud: InMemoryCloud) -> Iterator[DiskWaiter]:
    with running_waiter(cloud, 0.01) as w:
        yield w


def make(cloud: InMemoryCloud, waiter: DiskWaiter, **config: object) -> Attacher:
    settings: dict[str, object] = {"operation_timeout": 2.0, **config}
    return Attacher(cloud, waiter, Config(**settings))  # type: ignore[arg-type]


def test_attach_reaches_in_use_through_the_waiter(cloud: InMemoryCloud, waiter: DiskWaiter) -> None:
    cloud.latency = 2
    disk = cloud.add_disk()
    got = make(cloud, waiter).attach(disk.id, "i-here")
    assert got.status == port.IN_USE
    assert cloud.disk(disk.id).attachments == ("i-here",)


def test_an_attach_costs_one_attach_call_and_a_share_of_the_polls(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    cloud.latency = 2
    disk = cloud.add_disk()
    make(cloud, waiter).attach(disk.id, "i-here")
    assert cloud.calls["attach_disk"] == 1
    assert cloud.asked("describe_disks") == 0 and cloud.calls["describe_instance"] == 0


def test_attach_when_already_attached_attaches_nothing(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-here",))
    got = make(cloud, waiter).attach(disk.id, "i-here")
    assert got.attachments == ("i-here",) and got.status == port.IN_USE
    # ECS refuses the AttachDisk; one look at the disk finds it attached here.
    assert cloud.calls["attach_disk"] == 1 and cloud.asked("describe_disks") == 1
    assert cloud.calls["describe_instance"] == 0


@pytest.mark.parametrize("code", ["InvalidDisk.InUse", "DiskError", "DiskId.StatusNotSupported"])
def test_attach_refused_in_other_words_looks_at_the_disk(
    cloud: InMemoryCloud, waiter: DiskWaiter, code: str
) -> None:
    # ECS's AttachDisk page lists these answers for a disk that is not Available.
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-here",))
    cloud.fail("attach_disk", ecs_error(code, "", "AttachDisk"))
    got = make(cloud, waiter).attach(disk.id, "i-here")
    assert got.attachments == ("i-here",)
    assert cloud.calls["attach_disk"] == 1 and cloud.asked("describe_disks") == 1


def test_an_attach_ecs_keeps_refusing_ends_aborted_after_three_rounds(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    disk = cloud.add_disk()  # Available, yet ECS says its status will not do
    cloud.fail("attach_disk", ecs_error("IncorrectDiskStatus", "", "AttachDisk"), times=5)
    with pytest.raises(Aborted, match="could not be attached"):
        make(cloud, waiter).attach(disk.id, "i-here")
    assert cloud.calls["attach_disk"] == 3 and cloud.asked("describe_disks") == 3


def _reply_lost(cloud: InMemoryCloud, method: str) -> None:
    """``method`` acts, then its answer is lost on the way back."""
    original = getattr(cloud, method)

    def lost(*args: object) -> None:
        original(*args)
        raise ecs_error("InternalError", "", method)

    setattr(cloud, method, lost)


def test_an_attach_whose_answer_was_lost_is_not_a_failure(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    disk = cloud.add_disk()
    _reply_lost(cloud, "attach_disk")
    got = make(cloud, waiter).attach(disk.id, "i-here")
    assert got.status == port.IN_USE and got.attachments == ("i-here",)
    assert cloud.asked("describe_disks") == 1


def test_an_attach_that_failed_before_acting_is_raised_without_a_look(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    disk = cloud.add_disk()
    cloud.fail("attach_disk", ecs_error("InstanceDiskLimitExceeded", "", "AttachDisk"))
    with pytest.raises(DriverError, match="InstanceDiskLimitExceeded"):
        make(cloud, waiter).attach(disk.id, "i-here")
    cloud.fail("attach_disk", ecs_error("Throttling", "", "AttachDisk"))  # ECS did nothing
    with pytest.raises(DriverError, match="Throttling"):
        make(cloud, waiter).attach(disk.id, "i-here")
    assert cloud.asked("describe_disks") == 0
    assert cloud.disk(disk.id).attachments == ()


def test_a_transient_attach_failure_that_did_not_attach_is_raised(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    disk = cloud.add_disk()
    cloud.fail("attach_disk", ecs_error("InternalError", "", "AttachDisk"))
    with pytest.raises(DriverError, match="InternalError"):
        make(cloud, waiter).attach(disk.id, "i-here")
    assert cloud.asked("describe_disks") == 1  # looked: not attached, so it failed


@pytest.mark.parametrize("action", ["attach", "detach"])
def test_an_answer_saying_the_instance_changed_drops_what_is_known_of_it(
    cloud: InMemoryCloud, waiter: DiskWaiter, action: str
) -> None:
    attacher = make(cloud, waiter)
    attacher.instances.get("i-here")
    attached = action == "detach"
    disk = cloud.add_disk(
        status=port.IN_USE if attached else port.AVAILABLE,
        attachments=("i-here",) if attached else (),
    )
    method = f"{action}_disk"
    cloud.fail(method, ecs_error("IncorrectInstanceStatus", "", method))
    with pytest.raises(FailedPrecondition):
        getattr(attacher, action)(disk.id, "i-here")
    attacher.instances.get("i-here")
    assert cloud.calls["describe_instance"] == 2  # asked again after ECS said it changed


def test_a_multi_attach_disk_is_attached_beside_its_holders(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-there",), multi_attach=True)
    got = make(cloud, waiter).attach(disk.id, "i-here", known=cloud.disk(disk.id))
    assert set(got.attachments) == {"i-there", "i-here"}
    assert cloud.calls["detach_disk"] == 0 and cloud.calls["describe_instance"] == 0


def test_a_detach_whose_answer_was_lost_waits_for_the_detach(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-here",))
    _reply_lost(cloud, "detach_disk")
    make(cloud, waiter).detach(disk.id, "i-here")
    assert cloud.disk(disk.id).attachments == () and cloud.disk(disk.id).status == port.AVAILABLE


def test_a_detach_refused_for_a_disk_no_longer_there_is_done(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    disk = cloud.add_disk()  # detached meanwhile: ECS refuses for its status
    cloud.fail("detach_disk", ecs_error("IncorrectDiskStatus", "", "DetachDisk"))
    make(cloud, waiter).detach(disk.id, "i-here")
    assert cloud.calls["detach_disk"] == 1 and cloud.asked("describe_disks") == 1


def test_unknown_disk_and_unknown_instance_are_not_found(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    attacher = make(cloud, waiter)
    with pytest.raises(NotFound, match="disk"):
        attacher.attach("d-nosuchdisk", "i-here")
    disk = cloud.add_disk()
    with pytest.raises(NotFound, match="instance"):
        attacher.attach(disk.id, "i-gone")


def test_other_zone_is_refused_naming_both_zones(cloud: InMemoryCloud, waiter: DiskWaiter) -> None:
    disk = cloud.add_disk(zone=ZONE)
    with pytest.raises(FailedPrecondition, match=f"zone {ZONE} .* is in {OTHER_ZONE}"):
        make(cloud, waiter).attach(disk.id, "i-far")
    assert cloud.disk(disk.id).attachments == ()


def test_a_disk_is_not_freed_for_an_instance_in_another_zone(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    cloud.set_instance_status("i-there", port.STOPPED)
    disk = cloud.add_disk(zone=ZONE, status=port.IN_USE, attachments=("i-there",))
    with pytest.raises(FailedPrecondition, match="zone"):
        make(cloud, waiter).attach(disk.id, "i-far")
    assert cloud.disk(disk.id).attachments == ("i-there",)
    assert cloud.calls["detach_disk"] == 0


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


def test_a_holder_started_again_is_not_robbed_on_a_stale_look(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    attacher = make(cloud, waiter)
    cloud.set_instance_status("i-there", port.STOPPED)
    assert attacher.instances.get("i-there").status == port.STOPPED  # type: ignore[union-attr]
    cloud.set_instance_status("i-there", port.RUNNING)  # started again since that look
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-there",))
    with pytest.raises(FailedPrecondition, match="Running"):
        attacher.attach(disk.id, "i-here")
    assert cloud.disk(disk.id).attachments == ("i-there",)
    assert cloud.calls["detach_disk"] == 0


def test_takeover_from_a_running_instance_only_when_allowed(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-there",))
    make(cloud, waiter, allow_takeover=True).attach(disk.id, "i-here")
    assert cloud.disk(disk.id).attachments == ("i-here",)


@pytest.mark.parametrize("status", [port.STARTING, port.STOPPING, "Pending"])
def test_attach_to_an_instance_in_transition_is_refused(
    cloud: InMemoryCloud, waiter: DiskWaiter, status: str
) -> None:
    cloud.set_instance_status("i-here", status)
    disk = cloud.add_disk()
    with pytest.raises(FailedPrecondition, match="IncorrectInstanceStatus"):
        make(cloud, waiter).attach(disk.id, "i-here")
    assert cloud.disk(disk.id).attachments == ()


def test_multi_attach_disk_joins_other_holders(cloud: InMemoryCloud, waiter: DiskWaiter) -> None:
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-there",), multi_attach=True)
    make(cloud, waiter).attach(disk.id, "i-here")
    assert set(cloud.disk(disk.id).attachments) == {"i-there", "i-here"}


def test_stuck_attach_times_out_then_a_retry_waits_for_the_same_attach(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    """ECS refuses to detach a disk still Attaching: the undo fails, nothing else is tried,
    and the retry waits for the attach already in flight instead of sending another."""
    cloud.stuck_attach.add("i-here")
    disk = cloud.add_disk()
    attacher = make(cloud, waiter, operation_timeout=0.3)
    with pytest.raises(DeadlineExceeded, match=disk.id):
        attacher.attach(disk.id, "i-here")
    assert cloud.calls["detach_disk"] == 1  # tried, refused: IncorrectDiskStatus
    assert cloud.disk(disk.id).status == port.ATTACHING
    with pytest.raises(DeadlineExceeded):
        attacher.attach(disk.id, "i-here")  # still stuck: wait again, no second AttachDisk
    assert cloud.calls["attach_disk"] == 1
    cloud.release_stuck_attach("i-here")
    got = attacher.attach(disk.id, "i-here")
    assert got.status == port.IN_USE and got.attachments == ("i-here",)
    assert cloud.calls["attach_disk"] == 1


def test_attach_while_already_attaching_here_waits_without_a_second_attach(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    cloud.latency = 3
    disk = cloud.add_disk()
    cloud.attach_disk(disk.id, "i-here")  # another caller's attach, in flight
    assert cloud.disk(disk.id).status == port.ATTACHING
    got = make(cloud, waiter).attach(disk.id, "i-here")
    assert got.status == port.IN_USE
    # The other caller's AttachDisk, and ours, which ECS refused: it waits for that one.
    assert cloud.calls["attach_disk"] == 2 and cloud.asked("describe_disks") == 1
    assert cloud.calls["describe_instance"] == 0  # no holder to release


def test_stuck_attach_that_finished_at_the_bound_is_kept(cloud: InMemoryCloud) -> None:
    # The wait gave up just as ECS finished: undoing a good attach would only cost a retry.
    class LateWaiter:
        def wait(
            self, disk_id: str, until: Callable[[Disk | None], bool], timeout: float
        ) -> Disk | None:
            raise DeadlineExceeded(f"disk {disk_id}: still Attaching after {timeout:g}s")

    disk = cloud.add_disk()
    got = Attacher(cloud, LateWaiter(), Config(operation_timeout=0.1)).attach(disk.id, "i-here")
    assert got.status == port.IN_USE and got.attached_to("i-here")
    assert cloud.calls["detach_disk"] == 0


def test_attach_waits_out_a_disk_still_creating(cloud: InMemoryCloud, waiter: DiskWaiter) -> None:
    cloud.latency = 3
    disk_id = cloud.create_disk(
        DiskRequest(zone=ZONE, category="cloud_essd", size_gib=20, client_token="")
    )
    assert cloud.disk(disk_id).status == port.CREATING
    got = make(cloud, waiter).attach(disk_id, "i-here")
    assert got.status == port.IN_USE
    assert cloud.calls["attach_disk"] == 2  # refused while Creating, sent again once settled


def test_attach_while_detaching_from_the_same_instance_attaches_again(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    cloud.latency = 2
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-here",))
    cloud.detach_disk(disk.id, "i-here")
    assert cloud.disk(disk.id).status == port.DETACHING
    got = make(cloud, waiter).attach(disk.id, "i-here")
    assert got.status == port.IN_USE and got.attachments == ("i-here",)
    assert cloud.calls["attach_disk"] == 2  # refused while Detaching, sent again once settled


def test_release_checks_every_holder_before_detaching_any(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    cloud.set_instance_status("i-here", port.STOPPED)
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-here", "i-there"), multi_attach=True)
    attacher = make(cloud, waiter)
    with pytest.raises(FailedPrecondition, match=r"i-there.*deleting it"):
        attacher.release(disk, force=False, purpose="deleting it")
    assert cloud.calls["detach_disk"] == 0
    attacher.release(disk, force=True, purpose="deleting it")
    assert cloud.disk(disk.id).attachments == ()
    assert cloud.disk(disk.id).status == port.AVAILABLE


def test_detach_waits_out_an_attach_in_progress(cloud: InMemoryCloud, waiter: DiskWaiter) -> None:
    cloud.latency = 2
    disk = cloud.add_disk()
    cloud.attach_disk(disk.id, "i-here")
    assert cloud.disk(disk.id).status == port.ATTACHING
    make(cloud, waiter).detach(disk.id, "i-here")
    assert cloud.disk(disk.id).status == port.AVAILABLE
    assert cloud.calls["detach_disk"] == 2  # refused while Attaching, sent again after


def test_detach_failure_while_still_attached_is_raised(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-here",))
    cloud.fail("detach_disk", ecs_error("IncorrectInstanceStatus", "", "DetachDisk"))
    with pytest.raises(FailedPrecondition):
        make(cloud, waiter).detach(disk.id, "i-here")
    assert cloud.disk(disk.id).attachments == ("i-here",)


def test_detach_waits_until_detached_and_tolerates_absence(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    cloud.latency = 2
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-here",))
    attacher = make(cloud, waiter)
    attacher.detach(disk.id, "i-here")
    assert cloud.disk(disk.id).status == port.AVAILABLE
    assert cloud.disk(disk.id).attachments == ()
    assert cloud.calls["detach_disk"] == 1 and cloud.asked("describe_disks") == 0
    attacher.detach(disk.id, "i-here")  # already detached
    attacher.detach("d-nosuchdisk", "i-here")  # gone
    # ECS's refusals (not attached there; no such disk) say so: no look at the disk.
    assert cloud.calls["detach_disk"] == 3 and cloud.asked("describe_disks") == 0


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
