"""What the driver knows about ECS instances, for a short while.

Attach decisions need an instance's zone, which never changes, so each instance is
described once per ``ttl`` however many volumes come and go on it; callers asking at the
same time share one DescribeInstances, and an ECS answer saying the instance is not what
was seen (gone, or in another status) drops it. A decision on its status that would be
unsafe on a stale answer (whether its disk may be detached) asks afresh.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from csi_disk.cloud.errors import says_instance_changed
from csi_disk.cloud.port import Cloud, Instance

TTL = 30.0
MAX_INSTANCES = 4096  # far more nodes than a cluster runs; bounds the memory either way


@dataclass(eq=False)
class _Lookup:
    done: threading.Event = field(default_factory=threading.Event)
    instance: Instance | None = None
    error: BaseException | None = None
    followers: int = 0  # callers waiting for this lookup's answer


class InstanceFacts:
    """DescribeInstances answers per instance id, kept for ``ttl`` seconds."""

    def __init__(
        self, cloud: Cloud, ttl: float = TTL, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._cloud = cloud
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, Instance | None]] = {}
        self._lookups: dict[str, _Lookup] = {}

    def get(self, instance_id: str, *, fresh: bool = False) -> Instance | None:
        """The instance as ECS showed it less than ``ttl`` ago; None when it does not exist.

        ``fresh`` asks ECS now (sharing a lookup already on its way): for decisions a stale
        status would make unsafe, such as detaching a disk from an instance seen stopped.
        """
        with self._lock:
            seen = self._seen.get(instance_id)
            if not fresh and seen is not None and self._clock() - seen[0] < self._ttl:
                return seen[1]
            lookup = self._lookups.get(instance_id)
            leader = lookup is None
            if lookup is None:
                lookup = self._lookups[instance_id] = _Lookup()
            else:
                lookup.followers += 1
        if not leader:
            lookup.done.wait()
            if lookup.error is not None:
                # A copy each: one exception raised in many threads shares a traceback.
                raise copy.copy(lookup.error).with_traceback(None)
            return lookup.instance
        try:
            lookup.instance = self._cloud.describe_instance(instance_id)
        except BaseException as err:
            lookup.error = err
            raise
        finally:
            with self._lock:
                del self._lookups[instance_id]
                if lookup.error is None:
                    self._remember(instance_id, lookup.instance)
            lookup.done.set()
        return lookup.instance

    def forget(self, instance_id: str) -> None:
        with self._lock:
            self._seen.pop(instance_id, None)

    def note(self, err: BaseException, instance_id: str) -> None:
        """Drop what is known of ``instance_id`` when ``err`` says it has changed."""
        if says_instance_changed(err):
            self.forget(instance_id)

    def _remember(self, instance_id: str, instance: Instance | None) -> None:
        now = self._clock()
        if len(self._seen) >= MAX_INSTANCES:
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self._ttl}
            while len(self._seen) >= MAX_INSTANCES:
                self._seen.pop(next(iter(self._seen)))
        self._seen[instance_id] = (now, instance)
