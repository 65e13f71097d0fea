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
