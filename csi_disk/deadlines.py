"""A call's deadline: its caller's, as gRPC carries it, bounded by --operation-timeout.

A handler turns its gRPC context into a ``Deadline`` once, first thing, and hands it to
every wait and queue below it: the shared disk waiter, the per-instance attach queue, the
wait for a device to appear. So a call never waits, nor holds its in-flight lock, after its
caller has given up; the caller's retry finds the work still in flight (a disk Creating or
Attaching) and carries on waiting for it instead of answering ABORTED until it is done.

Programs that change a filesystem (mkfs, fsck, resize2fs) are not cut short: stopping one
halfway only to start it again on every retry would never finish; they run under their own
bounds, and a retry meanwhile is ABORTED, the work being in flight.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

# A call answers a little before its caller's deadline, so that the answer, and the lock it
# releases, reach the caller rather than a timeout on its side: a tenth of the time left,
# at most a second.
ANSWER_MARGIN_SHARE = 0.1
ANSWER_MARGIN_MAX = 1.0


class HasTimeRemaining(Protocol):
    """What a deadline is read from: ``grpc.ServicerContext``."""

    def time_remaining(self) -> float | None: ...


@dataclass(frozen=True)
class Deadline:
    """When a call must have finished waiting, on ``time.monotonic``'s clock."""

    at: float
    start: float = field(default_factory=time.monotonic)  # when the call began

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        now = time.monotonic()
        return cls(at=now + seconds, start=now)

    @classmethod
    def of(cls, context: HasTimeRemaining | None, bound: float) -> Deadline:
        """The deadline of the call ``context`` belongs to, never later than ``bound``
        seconds from now; ``bound`` alone without a context or a caller's deadline."""
        remaining = context.time_remaining() if context is not None else None
        if remaining is None:
            return cls.after(bound)
        margin = min(ANSWER_MARGIN_MAX, max(remaining, 0.0) * ANSWER_MARGIN_SHARE)
        return cls.after(min(bound, remaining - margin))

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - time.monotonic())

    def within(self, seconds: float) -> float:
        """A wait's own bound, cut short where the call's deadline comes first."""
        return min(seconds, self.remaining())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at
