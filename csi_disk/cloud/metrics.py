"""Prometheus metrics for ECS calls.

Labels are the ECS action name and the ECS error code (or "OK"): both come from a fixed
vocabulary, never from request parameters, so no id or secret can reach a label.
"""

from __future__ import annotations

import re

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "csi_disk_ecs_requests_total",
    "ECS API calls by action and result code.",
    ["action", "code"],
)
DURATION = Histogram(
    "csi_disk_ecs_request_duration_seconds",
    "Time ECS took to answer one API call: the HTTP round trip, without the wait for the "
    "action's client-side budget or for a credential refresh.",
    ["action"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
THROTTLES = Counter(
    "csi_disk_ecs_throttles_total",
    "ECS API calls answered with a Throttling code.",
    ["action"],
)

BUDGET_WAIT = Histogram(
    "csi_disk_ecs_budget_wait_seconds",
    "Time a call waited for its action's client-side budget (calls per minute, and the "
    "back-off after Throttling) before it was sent.",
    ["action"],
    buckets=(0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

_LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,79}$")


def _safe(value: str) -> str:
    return value if _LABEL.match(value) else "other"


def observe(action: str, code: str, seconds: float, *, throttled: bool = False) -> None:
    """Record one finished ECS call."""
    action = _safe(action)
    REQUESTS.labels(action=action, code=_safe(code or "OK")).inc()
    DURATION.labels(action=action).observe(seconds)
    if throttled:
        THROTTLES.labels(action=action).inc()


def observe_budget_wait(action: str, seconds: float) -> None:
    BUDGET_WAIT.labels(action=_safe(action)).observe(max(0.0, seconds))
