"""Calls into a filesystem that may hang, bounded in time and in the threads they leave.

A stat or statvfs on a filesystem whose device stopped answering blocks in the kernel and
cannot be interrupted: the caller can only stop waiting. ``BoundedCalls.run`` makes such a
call in a daemon thread and waits at most a timeout; a call that does not return leaves its
thread parked. One call per key is in flight at a time (a kubelet asking every minute about
a hung volume joins the probe still parked there instead of parking another), and at most
``limit`` in all, so a node with hung filesystems does not grow a thread per call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from csi_disk.errors import DeadlineExceeded, Unavailable
from csi_disk.quoting import quote

T = TypeVar("T")

DEFAULT_LIMIT = 16


@dataclass(eq=False)
class _Call(Generic[T]):
    done: threading.Event = field(default_factory=threading.Event)
    value: T | None = None
    error: BaseException | None = None


class BoundedCalls:
    """Runs calls that may hang, at most one per key and ``limit`` in all at a time."""

    def __init__(self, what: str, limit: int = DEFAULT_LIMIT) -> None:
        self._what = what
        self._limit = limit
        self._lock = threading.Lock()
        self._calls: dict[str, _Call[object]] = {}

    def in_flight(self) -> int:
        """Calls started and not returned yet, parked ones included."""
        with self._lock:
            return len(self._calls)

    def run(self, key: str, call: Callable[[], T], timeout: float) -> T:
        """``call()``'s value or exception; DeadlineExceeded when it has not returned within
        ``timeout`` seconds (it goes on in its thread, and the next call on ``key`` waits for
        that one instead of starting another); Unavailable while ``limit`` calls are out."""
        with self._lock:
            running = self._calls.get(key)
            if running is None:
                if len(self._calls) >= self._limit:
                    raise Unavailable(
                        f"{len(self._calls)} earlier {self._what} calls have not returned; "
                        "not starting another until one does"
                    )
                running = self._calls[key] = _Call()
                threading.Thread(
                    target=self._work, args=(key, running, call), name=self._what, daemon=True
                ).start()
        if not running.done.wait(timeout):
            raise DeadlineExceeded(
                f"{self._what} of {quote(key)} did not answer within {timeout:g}s"
            )
        if running.error is not None:
            raise running.error
        return running.value  # type: ignore[return-value]

    def _work(self, key: str, running: _Call[object], call: Callable[[], object]) -> None:
        try:
            running.value = call()
        except BaseException as err:  # handed to every caller waiting on it
            running.error = err
        finally:
            with self._lock:
                if self._calls.get(key) is running:
                    del self._calls[key]
            running.done.set()
