"""One shared poller for every call waiting on a disk state.

A hundred provisioner workers each polling DescribeDisks once a second would throttle the
account; here all waits are served by one thread that asks about the union of waited disks
in batches of up to 100 ids per interval. A new wait triggers a prompt poll after a short
collection window, so a burst of new waits still costs one call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from csi_disk.cloud.port import Cloud, Disk
from csi_disk.errors import DeadlineExceeded, DriverError, Unavailable

log = logging.getLogger(__name__)

BATCH = 100
COLLECT_WINDOW = 0.05


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
    """Waits for disks to reach a state, sharing one DescribeDisks poll among all waiters."""

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

        Raises DeadlineExceeded naming the disk and its last seen status after ``timeout``.
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
        finished = entry.done.wait(timeout)
        with self._cond:
            if entry in self._waits:
                self._waits.remove(entry)
        if entry.error is not None:
            raise entry.error
        if finished:
            return entry.result
        raise DeadlineExceeded(f"disk {disk_id}: {self._describe_last(entry)} after {timeout:g}s")

    def close(self) -> None:
        """Stop the poller; waits still pending fail with Unavailable."""
        with self._cond:
            self._closed = True
            pending, self._waits = self._waits, []
            self._cond.notify_all()
            thread = self._thread
        for entry in pending:
            entry.error = Unavailable(f"disk {entry.disk_id}: the disk waiter is shut down")
            entry.done.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    # --- poller -------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._next_poll = time.monotonic() + self._window
            self._thread = threading.Thread(target=self._run, name="disk-waiter", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    delay = self._next_poll - time.monotonic()
                    if self._waits and delay <= 0:
                        break
                    self._cond.wait(delay if self._waits else None)
                if self._closed:
                    return
                waits = list(self._waits)
                self._last_poll = time.monotonic()
                self._next_poll = self._last_poll + self.interval
            self._poll(waits)

    def _poll(self, waits: list[_Wait]) -> None:
        ids = sorted({w.disk_id for w in waits})
        found: dict[str, Disk] = {}
        answered: set[str] = set()
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            try:
                disks = self._cloud.describe_disks(chunk)
            except DriverError as err:
                log.warning("polling %d disks failed, retrying next tick: %s", len(chunk), err)
                for w in waits:
                    if w.disk_id in chunk:
                        w.last_error = err.message
                continue
            except Exception:
                log.exception("polling %d disks failed unexpectedly", len(chunk))
                continue
            answered.update(chunk)
            found.update((d.id, d) for d in disks)
        for w in waits:
            if w.disk_id not in answered:
                continue
            disk = found.get(w.disk_id)
            w.seen, w.last, w.last_error = True, disk, ""
            try:
                satisfied = w.until(disk)
            except Exception as err:  # a bug in a predicate must reach its caller
                w.error = err
                satisfied = True
            if satisfied:
                w.result = disk
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
