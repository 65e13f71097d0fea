"""When and how fast to repeat an ECS call.

Repeating a call is safe only when ECS cannot act on it twice: reads, creates carrying a
ClientToken, or any call whose error proves ECS never acted on it (throttled). How fast to
call ECS at all is ``csi_disk.cloud.quotas``'s business.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from csi_disk.cloud.errors import EcsError, EcsThrottled

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Jittered exponential backoff bounded by attempts and by total time."""

    max_attempts: int = 5
    base_delay: float = 0.25
    max_delay: float = 5.0
    total_timeout: float = 30.0

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to sleep before retry number ``retry`` (0-based).

        "Equal jitter": half the capped exponential step is fixed, half random, so retries
        spread out but never collapse to zero.
        """
        step = min(self.max_delay, self.base_delay * (2**retry))
        return step / 2 + (rng or random).uniform(0, step / 2)


def should_retry(err: BaseException, *, idempotent: bool) -> bool:
    """True when ``err`` is transient and repeating the call cannot do anything twice."""
    if not isinstance(err, EcsError) or not err.retryable:
        return False
    return idempotent or err.not_applied


def call_with_retry(
    fn: Callable[[], T],
    *,
    idempotent: bool,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    on_retry: Callable[[EcsError, int, float], None] | None = None,
) -> T:
    """Run ``fn``, repeating it on retryable errors within ``policy``'s bounds.

    A throttled attempt does not count against ``max_attempts``, only against the total
    time: ECS did nothing with it, and the action's budget already spaces the next one.
    """
    deadline = clock() + policy.total_timeout
    retry = 0
    failed = 0
    while True:
        try:
            return fn()
        except EcsError as err:
            if not should_retry(err, idempotent=idempotent):
                raise
            if not isinstance(err, EcsThrottled):
                failed += 1
                if failed >= policy.max_attempts:
                    raise
            delay = policy.backoff(retry, rng)
            if clock() + delay > deadline:
                raise
            if on_retry is not None:
                on_retry(err, retry, delay)
            sleep(delay)
            retry += 1
