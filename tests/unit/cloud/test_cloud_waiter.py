"""The shared DescribeDisks poller."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest

from csi_disk.cloud.errors import PermissionDenied
from csi_disk.cloud.port import AVAILABLE, IN_USE, Disk
from csi_disk.cloud.quotas import in_background
from csi_disk.cloud.waiter import DiskWaiter
from csi_disk.errors import DeadlineExceeded, InvalidArgument, Unavailable
from tests.ecs_codes import ecs_error
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)


class CountingCloud:
    """Disks turn In_use after they have been described ``after`` times."""

    def __init__(self, ids: Sequence[str], after: int = 2) -> None:
        self.after = after
        self.seen = dict.fromkeys(ids, 0)
        self.calls: list[list[str]] = []
        self.failures = 0
        self.rejected: set[str] = set()  # ids ECS refuses as malformed
        self.forbidden = False
        self.lock = threading.Lock()

    def describe_disks(self, disk_ids: Sequence[str]) -> list[Disk]:
        with self.lock:
            self.calls.append(list(disk_ids))
            if self.failures:
                self.failures -= 1
                raise ecs_error("Throttling", "slow down")
            if self.forbidden:
                raise ecs_error("Forbidden.RAM", "user not authorized", action="DescribeDisks")
            if self.rejected & set(disk_ids):
                raise ecs_error("InvalidDiskIds.Malformed", "bad ids", action="DescribeDisks")
            out = []
            for disk_id in disk_ids:
                if disk_id not in self.seen:
                    continue
                self.seen[disk_id] += 1
                status = IN_USE if self.seen[disk_id] >= self.after else AVAILABLE
                attachments = ("i-1",) if status == IN_USE else ()
                out.append(Disk(disk_id, "z", "cloud_essd", 20, status, attachments=attachments))
            return out


@pytest.fixture
def make_waiter() -> Iterator:
    waiters: list[DiskWaiter] = []

    def make(cloud: CountingCloud, interval: float = 0.1) -> DiskWaiter:
        waiters.append(DiskWaiter(cloud, interval))  # type: ignore[arg-type]
        return waiters[-1]

    yield make
    for w in waiters:
        w.close()


def attached(disk: Disk | None) -> bool:
    return disk is not None and disk.attached_to("i-1")


def test_150_concurrent_waits_share_batched_polls(make_waiter) -> None:
    ids = [f"d-{n:04d}" for n in range(150)]
    cloud = CountingCloud(ids, after=3)
    waiter = make_waiter(cloud, interval=0.2)
    results: dict[str, Disk | None] = {}
    barrier = threading.Barrier(len(ids))

    def run(disk_id: str) -> None:
        barrier.wait()
        results[disk_id] = waiter.wait(disk_id, attached, timeout=30)

    threads = [threading.Thread(target=run, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ids
    assert all(d is not None and d.status == IN_USE for d in results.values())
    assert all(len(call) <= 100 for call in cloud.calls)
    # One wait per disk polled separately would cost 150 * 3 calls; batched it is about
    # two calls (150 ids in chunks of 100) per round, for a few rounds.
    assert len(cloud.calls) <= 2 * (3 + 3)
    assert sum(len(c) for c in cloud.calls) < 150 * 3 * 2


def test_gone_disk_returns_none(make_waiter) -> None:
    cloud = CountingCloud([])
    assert make_waiter(cloud).wait("d-gone", lambda d: d is None, timeout=10) is None


def test_timeout_names_the_disk_and_its_last_status(make_waiter) -> None:
    cloud = CountingCloud(["d-slow"], after=10**9)
    waiter = make_waiter(cloud, interval=0.05)
    with pytest.raises(DeadlineExceeded) as info:
        waiter.wait("d-slow", attached, timeout=0.3)
    assert "d-slow" in info.value.message
    assert AVAILABLE in info.value.message


def test_transient_poll_errors_are_retried_next_tick(make_waiter) -> None:
    cloud = CountingCloud(["d-1"], after=1)
    cloud.failures = 2
    disk = make_waiter(cloud, interval=0.05).wait("d-1", attached, timeout=10)
    assert disk is not None and disk.status == IN_USE
    assert len(cloud.calls) >= 3


def test_a_failing_predicate_reaches_its_caller(make_waiter) -> None:
    cloud = CountingCloud(["d-1"])

    def broken(disk: Disk | None) -> bool:
        raise RuntimeError("predicate bug")

    with pytest.raises(RuntimeError, match="predicate bug"):
        make_waiter(cloud).wait("d-1", broken, timeout=10)


def test_close_releases_pending_waits_and_refuses_new_ones() -> None:
    cloud = CountingCloud(["d-1"], after=10**9)
    waiter = DiskWaiter(cloud, 0.05)  # type: ignore[arg-type]
    errors: list[BaseException] = []
    started = threading.Event()

    def run() -> None:
        started.set()
        try:
            waiter.wait("d-1", attached, timeout=30)
        except Unavailable as err:
            errors.append(err)

    t = threading.Thread(target=run)
    t.start()
    started.wait()
    wait_until(lambda: cloud.calls, "the wait registered and polled")
    waiter.close()
    t.join(10)
    assert not t.is_alive()
    assert len(errors) == 1
    with pytest.raises(Unavailable):
        waiter.wait("d-1", attached, timeout=1)


def test_refused_permission_fails_the_wait_at_once(make_waiter) -> None:
    cloud = CountingCloud(["d-1"])
    cloud.forbidden = True
    with pytest.raises(PermissionDenied) as info:
        make_waiter(cloud, interval=0.05).wait("d-1", attached, timeout=60)
    assert "Forbidden.RAM" in info.value.message
    assert len(cloud.calls) == 1


def test_a_malformed_id_fails_only_its_own_wait(make_waiter) -> None:
    ids = [f"d-{n:04d}" for n in range(99)]
    cloud = CountingCloud(ids, after=1)
    cloud.rejected = {"d-0042"}
    waiter = make_waiter(cloud, interval=0.2)
    results: dict[str, object] = {}
    barrier = threading.Barrier(len(ids))

    def run(disk_id: str) -> None:
        barrier.wait()
        try:
            results[disk_id] = waiter.wait(disk_id, attached, timeout=60)
        except Exception as err:
            results[disk_id] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = results.pop("d-0042")
    assert isinstance(bad, InvalidArgument) and "InvalidDiskIds.Malformed" in bad.message
    assert all(isinstance(d, Disk) and d.status == IN_USE for d in results.values())
    # Halving the batch finds the id in about 2*log2(100) calls, not one call per id.
    assert len(cloud.calls) <= 2 * 8 + 4


def test_the_poller_survives_its_own_bug(make_waiter, caplog) -> None:
    cloud = CountingCloud(["d-1"], after=1)
    waiter = make_waiter(cloud, interval=0.05)
    real_poll = waiter._poll
    broken = [True]

    def poll(waits: list) -> None:
        if broken.pop() if broken else False:
            raise RuntimeError("bug in the poll loop")
        real_poll(waits)

    waiter._poll = poll
    disk = waiter.wait("d-1", attached, timeout=30)
    assert disk is not None and disk.status == IN_USE
    assert "bug in the poll loop" in caplog.text


class ThreadKiller(BaseException):
    """Escapes every ``except Exception``: the poller thread dies of it."""


def test_a_dead_poller_is_restarted_for_pending_and_new_waits(make_waiter, monkeypatch) -> None:
    monkeypatch.setattr(threading, "excepthook", lambda args: None)
    cloud = CountingCloud(["d-1", "d-2"], after=1)
    waiter = make_waiter(cloud, interval=0.05)
    real_poll = waiter._poll
    kill = [True]
    died = threading.Event()

    def poll(waits: list) -> None:
        if kill.pop() if kill else False:
            died.set()
            raise ThreadKiller
        real_poll(waits)

    waiter._poll = poll
    result: list[Disk | None] = []
    pending = threading.Thread(target=lambda: result.append(waiter.wait("d-1", attached, 30)))
    pending.start()
    assert died.wait(10)
    pending.join(30)
    assert result and result[0] is not None and result[0].id == "d-1"
    disk = waiter.wait("d-2", attached, timeout=30)
    assert disk is not None and disk.id == "d-2"


def test_close_does_not_hang_on_a_stuck_poll() -> None:
    release = threading.Event()
    entered = threading.Event()

    class StuckCloud:
        def describe_disks(self, disk_ids: Sequence[str]) -> list[Disk]:
            entered.set()
            release.wait(30)
            return []

    waiter = DiskWaiter(StuckCloud(), 0.05)  # type: ignore[arg-type]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            waiter.wait("d-1", attached, 30)
        except Unavailable as err:
            errors.append(err)

    t = threading.Thread(target=run)
    t.start()
    assert entered.wait(10)
    waiter.close(timeout=0.1)
    poller = waiter._thread
    assert poller is not None and poller.is_alive()  # close returned while the poll is stuck
    t.join(10)
    assert not t.is_alive() and len(errors) == 1  # the pending wait was released
    release.set()
    poller.join(10)
    assert not poller.is_alive()


def test_polls_go_after_calls_a_user_waits_for(make_waiter) -> None:
    """The waiter's DescribeDisks polls are background calls: the action's budget lets any
    call a user waits for go first."""
    seen: list[bool] = []

    class Recording(CountingCloud):
        def describe_disks(self, disk_ids: Sequence[str]) -> list[Disk]:
            seen.append(in_background())
            return super().describe_disks(disk_ids)

    waiter = make_waiter(Recording(["d-1"], after=2), interval=0.02)
    waiter.wait("d-1", attached, timeout=10)
    assert seen and all(seen)
    assert not in_background()
