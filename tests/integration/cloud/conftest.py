"""An emulator for the EcsCloud integration tests, and EcsCloud clients pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from csi_disk.cloud.credentials import Credentials, StaticProvider
from csi_disk.cloud.ecs import EcsCloud
from csi_disk.cloud.retry import RetryPolicy
from csi_disk.cloud.waiter import DiskWaiter
from csi_disk_emulator.process import EmulatorInfo, running_emulator

LATENCY_SCALE = 0.01  # create 10 ms, attach/detach 20 ms


@pytest.fixture(scope="session")
def cloud_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    with running_emulator(
        tmp_path_factory.mktemp("ecs-cloud"), latency_scale=LATENCY_SCALE, seed=11
    ) as info:
        yield info


@pytest.fixture
def emu(cloud_emulator: EmulatorInfo) -> Iterator[EmulatorInfo]:
    """The shared emulator, with any faults or throttles a test set cleared afterwards."""
    yield cloud_emulator
    cloud_emulator.admin("DELETE", "/faults")


def _make_cloud(info: EmulatorInfo, provider: Any = None, **kwargs: Any) -> EcsCloud:
    kwargs.setdefault("retry_policy", RetryPolicy(base_delay=0.02, max_delay=0.1))
    return EcsCloud(
        info.region,
        provider or StaticProvider(Credentials(info.access_key_id, info.access_key_secret)),
        endpoint=info.ecs_endpoint,
        **kwargs,
    )


@pytest.fixture
def make_cloud(emu: EmulatorInfo) -> Callable[..., EcsCloud]:
    """Factory: ``make_cloud(provider)`` an EcsCloud on the emulator with other credentials."""
    return lambda provider=None, **kwargs: _make_cloud(emu, provider, **kwargs)


@pytest.fixture
def cloud(emu: EmulatorInfo) -> EcsCloud:
    return _make_cloud(emu)


@pytest.fixture
def waiter(cloud: EcsCloud) -> Iterator[DiskWaiter]:
    w = DiskWaiter(cloud, interval=0.05)
    yield w
    w.close()
