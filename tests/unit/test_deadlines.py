"""The caller's deadline bounds every wait and queue of a call, and a retry after it carries
on with the work in flight: the Deadline value itself, then the controller, the attach
queue and the node against the in-memory cloud (a ``Caller`` plays the gRPC context)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from csi_disk.attach import Attacher
from csi_disk.categories import GIB
from csi_disk.cloud import port
from csi_disk.cloud.waiter import DiskWaiter
from csi_disk.config import Config
from csi_disk.csi_pb import csi_pb2
from csi_disk.deadlines import ANSWER_MARGIN_MAX, Deadline
from csi_disk.errors import Aborted, DeadlineExceeded
from csi_disk.locks import InstanceSlots
from csi_disk.node import NodeService
from tests.fakes import HERE, FakeHost, InMemoryCloud
from tests.unit.controller_helpers import ZONE, cloud_with, running_waiter
from tests.unit.controller_helpers import controller as make_controller

LONG = 300.0  # --operation-timeout in these tests: never the bound that ends a wait here
Cap = csi_pb2.VolumeCapability


class Caller:
    """A gRPC context as far as deadlines go: the time its caller has left."""

    def __init__(self, seconds: float | None) -> None:
        self._until = None if seconds is None else time.monotonic() + seconds

    def time_remaining(self) -> float | None:
        return None if self._until is None else self._until - time.monotonic()


# --- the value -------------------------------------------------------------------------------


def test_without_a_caller_deadline_the_operation_timeout_bounds_the_call() -> None:
    for context in (None, Caller(None)):
        deadline = Deadline.of(context, 30.0)
        assert 29.0 < deadline.remaining() <= 30.0
        assert deadline.at - deadline.start == pytest.approx(30.0)


def test_the_callers_deadline_wins_less_a_margin_to_answer_in() -> None:
    short = Deadline.of(Caller(2.0), LONG)
    assert 1.7 < short.remaining() <= 1.8  # a tenth kept back
    long = Deadline.of(Caller(100.0), LONG)
    assert 98.9 < long.remaining() <= 100.0 - ANSWER_MARGIN_MAX  # at most a second
    assert Deadline.of(Caller(100.0), 5.0).remaining() <= 5.0  # the bound still holds


def test_a_deadline_already_past_leaves_nothing_to_wait() -> None:
    gone = Deadline.of(Caller(-1.0), LONG)
    assert gone.expired and gone.remaining() == 0.0
    assert gone.within(60.0) == 0.0
    assert Deadline.after(10.0).within(2.0) == 2.0


# --- the controller --------------------------------------------------------------------------


@pytest.fixture
def cloud() -> InMemoryCloud:
    return cloud_with(("i-here", ZONE), ("i-there", ZONE))


@pytest.fixture
def waiter(cloud: InMemoryCloud) -> Iterator[DiskWaiter]:
    with running_waiter(cloud, 0.005, collect_window=0.001) as w:
        yield w


def create_request(name: str) -> csi_pb2.CreateVolumeRequest:
    return csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=20 * GIB),
        volume_capabilities=[Cap(mount=Cap.MountVolume(), access_mode=Cap.AccessMode(mode=1))],
    )


def test_create_volume_answers_at_its_callers_deadline_and_the_retry_gets_the_same_disk(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    cloud.latency = 10**9  # Creating until hurried
    ctl = make_controller(cloud, waiter, operation_timeout=LONG)
    with pytest.raises(DeadlineExceeded, match="Creating"):
        ctl.CreateVolume(create_request("pvc-late"), Caller(0.3))
    assert not ctl.name_locks.is_held("pvc-late"), "the lock outlived the call"
    (disk_id,) = cloud.disks
    assert cloud.disk(disk_id).status == port.CREATING
    cloud.hurry(disk_id)
    volume = ctl.CreateVolume(create_request("pvc-late"), Caller(30.0)).volume
    assert volume.volume_id == disk_id
    assert cloud.calls["create_disk"] == 1, "the retry asked ECS for another disk"


def test_publish_answers_at_its_callers_deadline_and_the_retry_waits_for_the_same_attach(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    cloud.latency = 10**9  # Attaching until hurried
    disk = cloud.add_disk()
    ctl = make_controller(cloud, waiter, operation_timeout=LONG)
    request = csi_pb2.ControllerPublishVolumeRequest(
        volume_id=disk.id,
        node_id="i-here",
        volume_capability=Cap(mount=Cap.MountVolume(), access_mode=Cap.AccessMode(mode=1)),
    )
    with pytest.raises(DeadlineExceeded):
        ctl.ControllerPublishVolume(request, Caller(0.3))
    assert not ctl.disks.locks.is_held(disk.id)
    assert cloud.disk(disk.id).status == port.ATTACHING, "a slow attach is not undone"
    assert cloud.calls["detach_disk"] == 0
    cloud.hurry(disk.id)
    ctl.ControllerPublishVolume(request, Caller(30.0))
    assert cloud.disk(disk.id).attachments == ("i-here",)
    assert cloud.calls["attach_disk"] == 1


def test_expand_answers_at_its_callers_deadline(cloud: InMemoryCloud, waiter: DiskWaiter) -> None:
    cloud.latency = 10**9
    disk = cloud.add_disk()
    cloud.attach_disk(disk.id, "i-here")  # someone's attach, Attaching until hurried
    ctl = make_controller(cloud, waiter, operation_timeout=LONG)
    request = csi_pb2.ControllerExpandVolumeRequest(
        volume_id=disk.id, capacity_range=csi_pb2.CapacityRange(required_bytes=40 * GIB)
    )
    with pytest.raises(DeadlineExceeded):
        ctl.ControllerExpandVolume(request, Caller(0.3))
    assert not ctl.disks.locks.is_held(disk.id)


# --- the attach queue ------------------------------------------------------------------------


def test_a_queued_attach_gives_up_at_the_deadline_with_aborted() -> None:
    slots = InstanceSlots()
    holding = threading.Event()
    done = threading.Event()

    def hold() -> None:
        with slots.attach("i-here", 5.0):
            holding.set()
            done.wait(5.0)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5.0)
        deadline = Deadline.of(Caller(0.2), LONG)
        with pytest.raises(Aborted, match="i-here"), slots.attach("i-here", deadline.remaining()):
            pass
        assert deadline.expired
    finally:
        done.set()
        holder.join()


def test_an_attach_stuck_past_the_operation_timeout_is_undone_by_a_later_call(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    """The caller's deadline leaves a slow attach alone; once it has been Attaching for
    --operation-timeout since the first call waited for it, a retry undoes it."""
    cloud.stuck_attach.add("i-here")
    disk = cloud.add_disk()
    attacher = Attacher(cloud, waiter, Config(operation_timeout=0.6))
    with pytest.raises(DeadlineExceeded):
        attacher.attach(disk.id, "i-here", Deadline.of(Caller(0.2), 0.6))
    assert cloud.calls["detach_disk"] == 0
    time.sleep(0.5)  # the attach has now been in flight longer than --operation-timeout
    with pytest.raises(DeadlineExceeded):
        attacher.attach(disk.id, "i-here", Deadline.of(Caller(5.0), 0.6))
    assert cloud.calls["detach_disk"] == 1  # the undo was tried (ECS refuses it: Attaching)
    assert cloud.calls["attach_disk"] == 1


def test_a_finished_attach_is_not_counted_against_the_next_one(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    """The clock of a stuck attach starts anew for each attach: one that waited and
    finished long ago makes a later slow attach of the same disk look stuck to nobody."""
    cloud.latency = 5  # each attach waits a few polls
    disk = cloud.add_disk()
    attacher = Attacher(cloud, waiter, Config(operation_timeout=0.4))
    attacher.attach(disk.id, "i-here", Deadline.of(Caller(5.0), 0.4))
    attacher.detach(disk.id, "i-here", Deadline.of(Caller(5.0), 0.4))
    time.sleep(0.5)  # longer than --operation-timeout since the first attach began
    got = attacher.attach(disk.id, "i-here", Deadline.of(Caller(5.0), 0.4))
    assert got.status == port.IN_USE
    assert cloud.calls["detach_disk"] == 1  # the explicit detach only, no undo
    assert cloud.calls["attach_disk"] == 2


def test_after_a_refused_undo_the_retry_gives_the_attach_a_full_bound_again(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    cloud.stuck_attach.add("i-here")
    disk = cloud.add_disk()
    attacher = Attacher(cloud, waiter, Config(operation_timeout=0.4))
    with pytest.raises(DeadlineExceeded):
        attacher.attach(disk.id, "i-here")  # stuck; ECS refuses the undo while Attaching
    assert cloud.calls["detach_disk"] == 1
    finish = threading.Timer(0.1, cloud.release_stuck_attach, ("i-here",))
    finish.start()
    try:
        got = attacher.attach(disk.id, "i-here")  # waits again, and sees it land
    finally:
        finish.join()
    assert got.status == port.IN_USE
    assert cloud.calls["detach_disk"] == 1 and cloud.calls["attach_disk"] == 1


# --- the node --------------------------------------------------------------------------------


def test_node_stage_answers_at_its_callers_deadline_and_the_retry_stages(
    cloud: InMemoryCloud, waiter: DiskWaiter, tmp_path: Path
) -> None:
    cloud.latency = 10**9
    disk = cloud.add_disk()
    config = Config(kubelet_dir=tmp_path, operation_timeout=LONG)
    node = NodeService(
        config,
        instance_id=HERE,
        zone=ZONE,
        attacher=Attacher(cloud, waiter, config),
        host=FakeHost(cloud),
        device_timeout=LONG,
    )
    request = csi_pb2.NodeStageVolumeRequest(
        volume_id=disk.id,
        staging_target_path=str(tmp_path / "staging"),
        volume_capability=Cap(mount=Cap.MountVolume(), access_mode=Cap.AccessMode(mode=1)),
    )
    with pytest.raises(DeadlineExceeded):
        node.NodeStageVolume(request, Caller(0.3))
    cloud.hurry(disk.id)
    node.NodeStageVolume(request, Caller(30.0))
    assert cloud.calls["attach_disk"] == 1


class VanishingWaiter:
    """A shared waiter under which every disk vanishes at the very end of the wait."""

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    def wait(self, disk_id: str, until: object, timeout: float) -> None:
        self.timeouts.append(timeout)
        time.sleep(timeout)
        return None


def test_create_volume_gives_up_on_vanishing_disks_at_its_deadline(cloud: InMemoryCloud) -> None:
    """Each disk created for the name vanishes while Creating: the generations of client
    tokens that follow share the call's one deadline, not one --operation-timeout each."""
    cloud.latency = 10**9
    waiter = VanishingWaiter()
    ctl = make_controller(cloud, waiter, operation_timeout=LONG)  # type: ignore[arg-type]
    with pytest.raises(DeadlineExceeded, match="vanished"):
        ctl.CreateVolume(create_request("pvc-vanishing"), Caller(0.3))
    assert sum(waiter.timeouts) <= 0.3
    assert cloud.calls["create_disk"] == 1, "CreateDisk went on after the caller gave up"
    assert not ctl.name_locks.is_held("pvc-vanishing")
