"""API rate quotas as ECS enforces them: per account, per action, per minute.

ECS counts each action's calls per account (every key and RAM role credential of it
together) in one-minute windows; a call over the action's quota is answered ``Throttling``
(HTTP 400) and the action may be called again from the next minute, while other actions
go on. The emulator has one account; its quotas default to the driver's own defaults
(``csi_disk.cloud.quotas``), so a driver that keeps to its budget is never throttled here
unless something else spends the account's calls, as on a busy account.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping

from csi_disk.cloud.quotas import ANY_ACTION, DEFAULT_PER_MINUTE, DEFAULT_QUOTAS
from csi_disk_emulator.errors import EcsError

MINUTE = 60.0


class Quotas:
    """Calls per minute per action (``*`` for the rest; 0 lifts the quota)."""

    def __init__(
        self, overrides: Mapping[str, int] | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._quotas: dict[str, int] = {}
        self._minute = -1
        self._used: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.set(overrides or {})

    def set(self, changes: Mapping[str, int | None]) -> None:
        """Change quotas; None puts an action back to its default."""
        with self._lock:
            merged = {ANY_ACTION: DEFAULT_PER_MINUTE, **DEFAULT_QUOTAS, **self._quotas}
            for name, value in changes.items():
                if value is None:
                    merged.pop(name, None)
                    if name == ANY_ACTION:
                        merged[name] = DEFAULT_PER_MINUTE
                    elif name in DEFAULT_QUOTAS:
                        merged[name] = DEFAULT_QUOTAS[name]
                else:
                    merged[name] = value
            self._quotas = merged

    def quotas(self) -> dict[str, int]:
        with self._lock:
            return dict(self._quotas)

    def quota(self, action: str) -> int:
        return self._quotas.get(action, self._quotas[ANY_ACTION])

    def used(self) -> dict[str, int]:
        """Calls counted in the current minute, by action."""
        with self._lock:
            self._roll(self._clock())
            return dict(self._used)

    def admit(self, action: str) -> None:
        """Count a call of ``action``; Throttling when its quota for this minute is spent."""
        with self._lock:
            self._roll(self._clock())
            quota = self.quota(action)
            if quota and self._used[action] >= quota:
                self.throttled[action] += 1
                raise EcsError("Throttling")
            self._used[action] += 1

    def new_minute(self) -> None:
        """Start a fresh minute for every action now."""
        with self._lock:
            self._used.clear()

    def forget_throttled(self) -> None:
        with self._lock:
            self.throttled.clear()

    def throttled_calls(self) -> dict[str, int]:
        with self._lock:
            return dict(self.throttled)

    def _roll(self, now: float) -> None:
        minute = int(now // MINUTE)
        if minute != self._minute:
            self._minute = minute
            self._used.clear()
