"""Fixtures for talking to the ECS emulator through the real aliyun SDK.

``emulator`` is one emulator process for the whole session (copy this pattern);
tests that stop instances or restart the process start their own with ``running_emulator``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from csi_disk_emulator.process import EmulatorInfo, running_emulator
from tests.integration.emulator.sdk import Ecs

LATENCY_SCALE = 0.01  # create 10 ms, attach/detach 20 ms


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    """One emulator for the session, with test-sized latencies."""
    with running_emulator(
        tmp_path_factory.mktemp("ecs-emulator"), latency_scale=LATENCY_SCALE, seed=7
    ) as info:
        yield info


@pytest.fixture
def ecs(emulator: EmulatorInfo) -> Ecs:
    return Ecs.for_account(emulator)


@pytest.fixture
def own_emulator(tmp_path: Path) -> Callable[..., Any]:
    """``with own_emulator(**options) as info:`` an emulator private to the test."""

    def start(**options: Any) -> Any:
        options.setdefault("latency_scale", LATENCY_SCALE)
        return running_emulator(tmp_path / "ecs", **options)

    return start
