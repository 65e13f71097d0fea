"""One shared poller for every call waiting on a disk state.

A hundred provisioner workers each polling DescribeDisks once a second would throttle the
account; here all waits are served by one thread that asks about the union of waited disks
in batches of up to 100 ids per interval. A new wait triggers a prompt poll after a short
collection window, so a burst of new waits still costs one call.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from csi_disk.cloud.port import Cloud, Disk
from csi_disk.cloud.quotas import background
from csi_disk.errors import DeadlineExceeded, DriverError, Unavailable

log = logging.getLogger(__name__)

BATCH = 100
COLLECT_WINDOW = 0.05
HEALTH_CHECK = 1.0  # a blocked waiter checks this often that the poller is alive
CLOSE_TIMEOUT = 5.0
# An error that asking again about the same ids cannot cure: ECS rejected one of them.
_REJECTED_CODES = frozenset({"INVALID_ARGUMENT"})


@dataclass(eq=False)
class _Wait:
    disk_id: str
    until: Callable[[Disk | None], bool]
    done: threading.Event = field(default_factory=threading.Event)
    result: Disk | None = None
    error: BaseException | None = None
    seen: bool = False
    last: Disk | None = None
    last_error: str = ""


class DiskWaiter:
    """Waits for disks to reach a state, sharing one DescribeDisks poll among all waiters.

    A poll error that retrying cannot cure (refused permission, an id ECS rejects) fails the
    waits it concerns at once with that error; only the waits on a rejected id fail, the
    rest of its batch is asked about again in halves. The poller thread survives its own
    bugs, and a waiter that finds it dead starts a new one.
    """

    def __init__(
        self,
        cloud: Cloud,
        interval: float = 1.0,
        *,
        collect_window: float = COLLECT_WINDOW,
    ) -> None:
        self._cloud = cloud
        self.interval = interval
        self._window = min(collect_window, interval)
        self._cond = threading.Condition()
        self._waits: list[_Wait] = []
        self._next_poll = 0.0
        self._last_poll = float("-inf")
        self._closed = False
        self._thread: threading.Thread | None = None

    def wait(
        self, disk_id: str, until: Callable[[Disk | None], bool], timeout: float
    ) -> Disk | None:
        """Block until ``until(disk)`` is true; the disk is None when it does not exist.

        Raises DeadlineExceeded naming the disk and its last seen status after ``timeout``,
        or the poll's own error when it is one that waiting longer cannot cure.
        """
        entry = _Wait(disk_id, until)
        with self._cond:
            if self._closed:
                raise Unavailable("the disk waiter is shut down")
            self._waits.append(entry)
            # Poll soon for the newcomer, but never sooner than a quarter interval after the
            # last poll: a steady trickle of new waits must not turn into a poll per wait.
            soon = max(time.monotonic() + self._window, self._last_poll + self.interval / 4)
            self._next_poll = min(self._next_poll, soon)
            self._ensure_thread()
            self._cond.notify_all()
        finished = self._block(entry, timeout)
        with self._cond:
            if entry in self._waits:
                self._waits.remove(entry)
        if entry.error is not None:
            raise entry.error
        if finished:
            return entry.result
        raise DeadlineExceeded(f"disk {disk_id}: {self._describe_last(entry)} after {timeout:g}s")

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Stop the poller; waits still pending fail with Unavailable.

        Waits at most ``timeout`` for a poll in progress (it may be inside an ECS call with
        its retries): shutdown must not hang on a slow endpoint.
        """
        with self._cond:
            self._closed = True
            pending, self._waits = self._waits, []
            self._cond.notify_all()
            thread = self._thread
        for entry in pending:
            entry.error = Unavailable(f"disk {entry.disk_id}: the disk waiter is shut down")
            entry.done.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("disk waiter still polling %gs after close; leaving it", timeout)

    # --- poller -------------------------------------------------------------------------

    def _block(self, entry: _Wait, timeout: float) -> bool:
        """Wait for ``entry``, checking now and then that a poller is still there to serve it."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return entry.done.is_set()
            if entry.done.wait(min(remaining, max(self.interval, HEALTH_CHECK))):
                return True
            with self._cond:
                if not self._closed:
                    self._ensure_thread()

    def _ensure_thread(self) -> None:
        """Start the poller, or a new one if the last died (call with the lock held)."""
        if self._thread is not None and self._thread.is_alive():
            return
        if self._thread is not None:
            log.error("the disk waiter's poller died; starting a new one")
        self._next_poll = time.monotonic() + self._window
        self._thread = threading.Thread(target=self._run, name="disk-waiter", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                waits = self._next_round()
                if waits is None:
                    return
                self._poll(waits)
            except Exception:
                # A bug here must not leave every later wait to time out: log, and go on
                # at the normal pace (never spin on an error that repeats).
                log.exception("disk waiter poll failed unexpectedly; polling on")
                with self._cond:
                    self._next_poll = max(self._next_poll, time.monotonic() + self.interval)

    def _next_round(self) -> list[_Wait] | None:
        """Sleep until a poll is due; the waits to poll, or None once closed."""
        with self._cond:
            while not self._closed:
                delay = self._next_poll - time.monotonic()
                if self._waits and delay <= 0:
                    break
                self._cond.wait(delay if self._waits else None)
            if self._closed:
                return None
            self._last_poll = time.monotonic()
            self._next_poll = self._last_poll + self.interval
            return list(self._waits)

    def _poll(self, waits: list[_Wait]) -> None:
        ids = sorted({w.disk_id for w in waits})
        by_id: dict[str, list[_Wait]] = {}
        for w in waits:
            by_id.setdefault(w.disk_id, []).append(w)
        found: dict[str, Disk] = {}
        answered: set[str] = set()
        failed: dict[str, DriverError] = {}
        for start in range(0, len(ids), BATCH):
            self._describe(ids[start : start + BATCH], by_id, found, answered, failed)
        for w in waits:
            if w.disk_id in failed:
                self._finish(w, error=_copy(failed[w.disk_id]))
                continue
            if w.disk_id not in answered:
                continue
            disk = found.get(w.disk_id)
            w.seen, w.last, w.last_error = True, disk, ""
            try:
                satisfied = w.until(disk)
            except Exception as err:  # a bug in a predicate must reach its caller
                self._finish(w, error=err)
                continue
            if satisfied:
                self._finish(w, result=disk)

    def _describe(
        self,
        chunk: list[str],
        by_id: dict[str, list[_Wait]],
        found: dict[str, Disk],
        answered: set[str],
        failed: dict[str, DriverError],
    ) -> None:
        """Describe ``chunk``; on a rejected id, split it to find the id and fail only that."""
        try:
            with background():  # calls a user waits for go first
                disks = self._cloud.describe_disks(chunk)
        except DriverError as err:
            if err.code == "PERMISSION_DENIED":
                log.warning("polling %d disks refused; failing their waits: %s", len(chunk), err)
                failed.update(dict.fromkeys(chunk, err))
            elif err.code in _REJECTED_CODES and len(chunk) > 1:
                middle = len(chunk) // 2
                for half in (chunk[:middle], chunk[middle:]):
                    self._describe(half, by_id, found, answered, failed)
            elif err.code in _REJECTED_CODES:
                log.warning("ECS rejected disk id %s; failing its waits: %s", chunk[0], err)
                failed[chunk[0]] = err
            else:
                log.warning("polling %d disks failed, retrying next tick: %s", len(chunk), err)
                for disk_id in chunk:
                    for w in by_id.get(disk_id, ()):
                        w.last_error = err.message
            return
        except Exception:
            log.exception("polling %d disks failed unexpectedly", len(chunk))
            return
        answered.update(chunk)
        found.update((d.id, d) for d in disks)

    def _finish(
        self, w: _Wait, *, result: Disk | None = None, error: BaseException | None = None
    ) -> None:
        w.result, w.error = result, error
        with self._cond:
            if w in self._waits:
                self._waits.remove(w)
        w.done.set()

    @staticmethod
    def _describe_last(entry: _Wait) -> str:
        if entry.last_error and not entry.seen:
            return f"never described ({entry.last_error})"
        if not entry.seen:
            return "never described"
        if entry.last is None:
            return "did not reach the wanted state; last seen: does not exist"
        attached = ",".join(entry.last.attachments) or "none"
        return (
            f"did not reach the wanted state; last status {entry.last.status}, "
            f"attached to {attached}"
        )


def _copy(err: DriverError) -> BaseException:
    """A copy per waiting thread: one exception object raised in many threads shares a
    traceback that each of them would rewrite."""
    try:
        return copy.copy(err).with_traceback(None)
    except Exception:
        return err
