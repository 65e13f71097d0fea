"""What the controller-side unit tests share: an in-memory cloud with running instances,
a shared waiter that polls fast, and a controller over them.

``cloud`` and ``ctl`` are fixtures for modules that need no more than one instance in
``ZONE``; such a module binds them by name (``cloud = controller_helpers.cloud``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from csi_disk.cloud.waiter import DiskWaiter
from csi_disk.config import Config
from csi_disk.controller import ControllerService
from tests.fakes import InMemoryCloud

ZONE = "cn-hangzhou-h"


def cloud_with(*instances: tuple[str, str]) -> InMemoryCloud:
    """An in-memory cloud with these ``(instance id, zone)`` instances running."""
    c = InMemoryCloud()
    for instance_id, zone in instances:
        c.add_instance(instance_id, zone)
    return c


@contextmanager
def running_waiter(cloud: InMemoryCloud, interval: float, **options: float) -> Iterator[DiskWaiter]:
    """A real shared waiter over ``cloud``, closed after use so no poller thread outlives a test."""
    waiter = DiskWaiter(cloud, interval, **options)
    try:
        yield waiter
    finally:
        waiter.close()


def controller(cloud: InMemoryCloud, waiter: DiskWaiter, **config: object) -> ControllerService:
    """A controller in controller attach mode unless ``config`` says otherwise."""
    settings: dict[str, object] = {"attach_mode": "controller", "operation_timeout": 10.0}
    settings.update(config)
    return ControllerService(Config(**settings), cloud, waiter, default_zone=ZONE)  # type: ignore[arg-type]


@pytest.fixture
def cloud() -> InMemoryCloud:
    return cloud_with(("i-h1", ZONE))


@pytest.fixture
def ctl(cloud: InMemoryCloud) -> Iterator[ControllerService]:
    with running_waiter(cloud, 0.005, collect_window=0.001) as waiter:
        yield controller(cloud, waiter, operation_timeout=5.0)
