"""Seeded fuzz of every CSI call: no request, however hostile, is answered INTERNAL or
UNKNOWN, changes anything outside the kubelet directory, or puts a secret in the log.

Run alone with ``pytest -m fuzz``. Hypothesis is derandomised (tests/conftest.py), so a
failure repeats; each call gets at least ``EXAMPLES`` requests where it takes any, and the
node's path-taking calls also every hand-picked hostile path in each path field.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, example, given, settings

from csi_disk.server import MAX_STATUS_MESSAGE
from tests.fuzz.conftest import Rig
from tests.fuzz.requests import (
    CONSTANT,
    CONTROLLER,
    IDENTITY,
    NODE,
    hand_picked,
    requests_for,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.root, pytest.mark.timeout(300)]

EXAMPLES = 300
FORBIDDEN = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)

CALLS = [("controller", name) for name in CONTROLLER]
CALLS += [("node", name) for name in NODE]
CALLS += [("identity", name) for name in IDENTITY]


TABLES = {"controller": CONTROLLER, "node": NODE, "identity": IDENTITY}


@pytest.mark.parametrize(("service", "name"), CALLS, ids=[n for _, n in CALLS])
def test_no_request_breaks_the_plugin(rig: Rig, service: str, name: str) -> None:
    stub = getattr(rig, service)
    call = getattr(stub, name)
    requests = requests_for(TABLES[service], name, rig)
    answered: dict[str, int] = {}

    @settings(
        max_examples=EXAMPLES,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=requests)
    def check(request: Any) -> None:
        try:
            call(request, timeout=60)
            code = grpc.StatusCode.OK
        except grpc.RpcError as err:
            code = err.code()
            details = err.details() or ""
            assert code not in FORBIDDEN, f"{name} answered {code.name}: {details}"
            assert len(details) <= MAX_STATUS_MESSAGE
        answered[code.name] = answered.get(code.name, 0) + 1
        assert rig.outside_changes(loops=False) == []

    for request in hand_picked(name, rig):
        check = example(request=request)(check)
    check()
    assert rig.outside_changes(loops=True) == []
    sent = sum(answered.values())
    print(f"{name}: {sent} requests, {dict(sorted(answered.items()))}")
    assert sent >= (1 if name in CONSTANT else EXAMPLES), f"{name}: only {sent} requests"
