"""ECS API budgets: calls per minute for each action, the way ECS meters them.

ECS throttles every API action on its own, per account and region, counting calls in
one-minute windows; a call over the quota is answered ``Throttling`` and the action may be
called again the next minute. ECS publishes no default quotas (an account sees its own in
the Quota Center console), so the defaults here are the only public figures there are: what
Alibaba's Terway plugin assumes for ECS, 500 calls a minute for an action it does not list
and 400 for DescribeInstanceTypes. ``--api-quotas`` sets an account's real ones.

Each action's budget lets at most its quota of calls start within any minute (plus a second
for the way there), a sliding window that keeps within ECS's fixed windows however they
fall: a burst of up to a minute's quota goes at once, the rest waits for the window to
move. Calls a user waits for go before background polling of the same action. When ECS
throttles an action anyway (other clients of the account spent the quota), that action's
calls go one at a time one second apart, as Alibaba advises, the gap doubling up to ten
seconds while ECS keeps refusing and shrinking to a quarter with every call it takes, until
the action is back to full speed. Other actions are not slowed.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping

from csi_disk.errors import Unavailable

DEFAULT_PER_MINUTE = 500  # Terway's figure for an ECS action it does not list
DEFAULT_QUOTAS: Mapping[str, int] = {"DescribeInstanceTypes": 400}  # Terway's figure
ANY_ACTION = "*"
# A call counts for a second longer than ECS's minute: network delay must not carry one
# call too many into the minute ECS counts it in.
WINDOW = 61.0
FIRST_GAP = 1.0  # after a Throttling answer, one call a second (Alibaba's advice)
MAX_GAP = 10.0
MAX_WAIT = 60.0  # a call waits this long for its budget at most, then answers UNAVAILABLE

_ACTION = re.compile(r"[A-Z][A-Za-z0-9]{1,63}")
_background: contextvars.ContextVar[bool] = contextvars.ContextVar("background", default=False)


@contextlib.contextmanager
def background() -> Iterator[None]:
    """ECS calls made inside go after calls a user waits for (the waiter's polls)."""
    token = _background.set(True)
    try:
        yield
    finally:
        _background.reset(token)


def in_background() -> bool:
    return _background.get()


def parse_quotas(text: str) -> dict[str, int]:
    """``"CreateDisk=300,*=500"`` as a dict; ValueError naming what is wrong.

    Each value is calls a minute; ``*`` is every action not listed; 0 means no client-side
    limit for that action.
    """
    quotas: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not value:
            raise ValueError(f"api-quotas {item[:40]!r}: expected Action=calls-per-minute")
        if name != ANY_ACTION and not _ACTION.fullmatch(name):
            raise ValueError(f"api-quotas {name[:40]!r} is not an ECS action name")
        if not value.isdigit():
            raise ValueError(f"api-quotas {name}={value[:20]!r}: expected a whole number")
        if name in quotas:
            raise ValueError(f"api-quotas names {name} twice")
        quotas[name] = int(value)
    return quotas


class ActionBudget:
    """One action's calls per minute, with back-off after ECS throttles it.

    ``per_minute`` 0 is no limit of its own; the back-off after Throttling still applies.
    """

    def __init__(
        self,
        action: str,
        per_minute: int,
        *,
        window: float = WINDOW,
        first_gap: float = FIRST_GAP,
        max_gap: float = MAX_GAP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute < 0:
            raise ValueError("per_minute must not be negative")
        self.action = action
        self.per_minute = per_minute
        self._window = window
        self._first_gap = first_gap
        self._max_gap = max_gap
        # Below this gap calls are as fast as the quota lets them be anyway: pacing ends.
        self._min_gap = min(first_gap, window / per_minute if per_minute else first_gap / 16)
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._sent: deque[float] = deque()
        self._queue: list[tuple[int, int]] = []  # (1 for background, arrival) of waiters
        self._arrivals = itertools.count()
        self._gap = 0.0  # seconds between calls while recovering from Throttling; 0: none
        self._gap_changed = -math.inf
        self._next_paced = -math.inf

    # --- what the budget allows --------------------------------------------------------

    def next_start(self, now: float) -> float:
        """The earliest time the next call may start (``now`` when it may go at once)."""
        sent = self._sent
        while sent and sent[0] <= now - self._window:
            sent.popleft()
        at = now
        if self.per_minute and len(sent) >= self.per_minute:
            at = sent[len(sent) - self.per_minute] + self._window
        if self._gap:
            at = max(at, self._next_paced)
        return at

    @property
    def gap(self) -> float:
        """Seconds between this action's calls while it recovers from Throttling; 0: none."""
        return self._gap

    @property
    def waiting(self) -> int:
        """Calls queued for a place."""
        with self._cond:
            return len(self._queue)

    # --- taking a call's place ---------------------------------------------------------

    def acquire(self, *, background: bool = False, max_wait: float | None = MAX_WAIT) -> float:
        """Wait until a call may start and count it; returns its start time.

        Callers go in arrival order, all calls a user waits for before any background one.
        Unavailable after ``max_wait`` seconds without a place.
        """
        with self._cond:
            now = self._clock()
            if not self._queue and self.next_start(now) <= now:
                return self._start(now)
            ticket = (int(background), next(self._arrivals))
            heapq.heappush(self._queue, ticket)
            began = now
            try:
                while True:
                    now = self._clock()
                    delay: float | None = None
                    if self._queue[0] == ticket:
                        at = self.next_start(now)
                        if at <= now:
                            heapq.heappop(self._queue)
                            self._cond.notify_all()
                            return self._start(now)
                        delay = at - now
                    if max_wait is not None:
                        left = began + max_wait - now
                        if left <= 0:
                            raise Unavailable(
                                f"ECS {self.action}: the client-side budget of "
                                f"{self.per_minute or 'unlimited'} calls a minute is spent "
                                f"(waited {max_wait:g}s); retry later"
                            )
                        delay = left if delay is None else min(delay, left)
                    self._cond.wait(delay)
            except BaseException:
                if ticket in self._queue:
                    self._queue.remove(ticket)
                    heapq.heapify(self._queue)
                    self._cond.notify_all()
                raise

    def _start(self, now: float) -> float:
        if self.per_minute:
            self._sent.append(now)
            while len(self._sent) > self.per_minute:
                self._sent.popleft()
        if self._gap:
            self._next_paced = now + self._gap
        return now

    # --- what ECS answered -------------------------------------------------------------

    def throttled(self, sent_at: float) -> None:
        """ECS answered Throttling to a call started at ``sent_at``: slow down.

        Only a call sent at the current pace doubles the gap: the rest of a burst that ran
        into the quota answers Throttling too, and says nothing new.
        """
        with self._cond:
            now = self._clock()
            if not self._gap:
                self._gap = self._first_gap
            elif sent_at > self._gap_changed:
                self._gap = min(self._max_gap, self._gap * 2)
            else:
                return
            self._gap_changed = now
            self._next_paced = max(self._next_paced, now + self._gap)
            self._cond.notify_all()

    def answered(self) -> None:
        """ECS took a call (whatever it answered): a quarter of the gap, until there is none.

        The gap shrinks faster than it grows, so the pace recovers in a few calls once ECS
        takes them again, and a refusal now and then does not ratchet it up.
        """
        if not self._gap:
            return
        with self._cond:
            if not self._gap:
                return
            self._gap /= 4
            if self._gap < self._min_gap:
                self._gap = 0.0
            self._gap_changed = self._clock()
            self._next_paced = min(self._next_paced, self._gap_changed + self._gap)
            self._cond.notify_all()


class ApiQuotas:
    """A budget for every ECS action, made on first use from the configured quotas."""

    def __init__(
        self,
        quotas: Mapping[str, int] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        **options: float,
    ) -> None:
        merged = {ANY_ACTION: DEFAULT_PER_MINUTE, **DEFAULT_QUOTAS, **(quotas or {})}
        for name, value in merged.items():
            if value < 0:
                raise ValueError(f"api-quotas {name}: must not be negative")
        self.quotas = merged
        self._clock = clock
        self._options = options
        self._budgets: dict[str, ActionBudget] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_text(cls, text: str, **kwargs: float) -> ApiQuotas:
        return cls(parse_quotas(text), **kwargs)  # type: ignore[arg-type]

    def per_minute(self, action: str) -> int:
        return self.quotas.get(action, self.quotas[ANY_ACTION])

    def budget(self, action: str) -> ActionBudget:
        budget = self._budgets.get(action)
        if budget is None:
            with self._lock:
                budget = self._budgets.get(action)
                if budget is None:
                    budget = ActionBudget(
                        action,
                        self.per_minute(action),
                        clock=self._clock,
                        **self._options,
                    )
                    self._budgets[action] = budget
        return budget
