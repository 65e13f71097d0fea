"""Calls that may hang: bounded in time, one per key, and a bounded number parked."""

from __future__ import annotations

import threading

import pytest

from csi_disk.errors import DeadlineExceeded, Unavailable
from csi_disk.host.bounded import BoundedCalls


def test_a_call_that_returns_in_time_answers_and_raises_as_it_would() -> None:
    calls = BoundedCalls("probe")
    assert calls.run("a", lambda: 42, 5.0) == 42
    with pytest.raises(FileNotFoundError):
        calls.run("a", lambda: open("/nonexistent/x"), 5.0)  # noqa: SIM115
    assert calls.in_flight() == 0


def test_a_hung_call_is_joined_not_repeated_and_the_total_is_capped() -> None:
    release = threading.Event()
    started: list[str] = []

    def hang(key: str) -> str:
        started.append(key)
        release.wait(30)
        return key

    calls = BoundedCalls("probe", limit=2)
    for _ in range(3):
        with pytest.raises(DeadlineExceeded, match="'a'"):
            calls.run("a", lambda: hang("a"), 0.05)
    with pytest.raises(DeadlineExceeded):
        calls.run("b", lambda: hang("b"), 0.05)
    with pytest.raises(Unavailable, match="2 earlier probe calls"):
        calls.run("c", lambda: hang("c"), 0.05)
    assert started == ["a", "b"] and calls.in_flight() == 2
    release.set()
    assert calls.run("a", lambda: "joined or fresh", 5.0) in ("a", "joined or fresh")
    for _ in range(200):
        if calls.in_flight() == 0:
            break
        threading.Event().wait(0.01)
    assert calls.in_flight() == 0
    assert calls.run("c", lambda: "c", 5.0) == "c"
