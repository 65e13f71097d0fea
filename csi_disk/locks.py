"""Per-key in-flight guards: a second call on the same volume answers ABORTED at once.

The CSI sidecars retry with backoff, so refusing a concurrent duplicate is better than
queueing it behind a call that may wait minutes for ECS.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from csi_disk.errors import Aborted


class InFlight:
    """A set of keys with an operation in progress; thread-safe."""

    def __init__(self) -> None:
        self._held: set[str] = set()
        self._mutex = threading.Lock()

    def try_acquire(self, key: str) -> bool:
        with self._mutex:
            if key in self._held:
                return False
            self._held.add(key)
            return True

    def release(self, key: str) -> None:
        with self._mutex:
            self._held.discard(key)

    def is_held(self, key: str) -> bool:
        with self._mutex:
            return key in self._held

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Hold ``key`` for the block; raise Aborted when another caller holds it."""
        if not self.try_acquire(key):
            raise Aborted(f"operation on {key} already in progress")
        try:
            yield
        finally:
            self.release(key)


class InstanceSlots:
    """One attach and one detach in flight per instance, detaches served first.

    ECS answers a second concurrent attach (or detach) on an instance with a conflict;
    queueing here turns that into waiting. A waiting detach holds back new attaches
    because it frees a disk slot the attach may need.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._attaching: set[str] = set()
        self._detaching: set[str] = set()
        self._detach_waiting: dict[str, int] = {}

    @contextmanager
    def attach(self, instance_id: str, timeout: float) -> Iterator[None]:
        """Hold the instance's attach slot; Aborted when it stays busy past ``timeout``."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: (
                    instance_id not in self._attaching and not self._detach_waiting.get(instance_id)
                ),
                timeout,
            )
            if not ok:
                raise Aborted(f"another attach to instance {instance_id} is still in progress")
            self._attaching.add(instance_id)
        try:
            yield
        finally:
            with self._cond:
                self._attaching.discard(instance_id)
                self._cond.notify_all()

    @contextmanager
    def detach(self, instance_id: str, timeout: float) -> Iterator[None]:
        """Hold the instance's detach slot; Aborted when it stays busy past ``timeout``."""
        with self._cond:
            self._detach_waiting[instance_id] = self._detach_waiting.get(instance_id, 0) + 1
            try:
                ok = self._cond.wait_for(lambda: instance_id not in self._detaching, timeout)
            finally:
                self._detach_waiting[instance_id] -= 1
                if not self._detach_waiting[instance_id]:
                    del self._detach_waiting[instance_id]
                self._cond.notify_all()
            if not ok:
                raise Aborted(f"another detach from instance {instance_id} is still in progress")
            self._detaching.add(instance_id)
        try:
            yield
        finally:
            with self._cond:
                self._detaching.discard(instance_id)
                self._cond.notify_all()
