"""When and how fast to repeat an ECS call, and how fast to call ECS at all.

Repeating a call is safe only when ECS cannot act on it twice: reads, creates carrying a
ClientToken, or any call whose error proves ECS never acted on it (throttled). The token
bucket keeps the driver under ECS's per-account API rate so a burst of volumes does not
turn into a storm of Throttling answers.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from csi_disk.cloud.errors import EcsError

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
    """Run ``fn``, repeating it on retryable errors within ``policy``'s bounds."""
    deadline = clock() + policy.total_timeout
    retry = 0
    while True:
        try:
            return fn()
        except EcsError as err:
            if not should_retry(err, idempotent=idempotent):
                raise
            if retry + 1 >= policy.max_attempts:
                raise
            delay = policy.backoff(retry, rng)
            if clock() + delay > deadline:
                raise
            if on_retry is not None:
                on_retry(err, retry, delay)
            sleep(delay)
            retry += 1


class TokenBucket:
    """Client-side rate limit: ``rate`` calls per second with bursts up to ``burst``.

    Callers reserve a token under the lock and sleep outside it, so waiting callers queue in
    arrival order without holding the lock.
    """

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = float(burst if burst is not None else max(1, int(rate)))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until it is available; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait
