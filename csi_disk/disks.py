"""What the controller's features share about disks: the cloud port, the shared waiter and
the per-volume in-flight locks, with the reads and waits every handler repeats.

Creation, snapshots, expansion and modification each take this small interface instead of
reaching into the controller servicer, so a feature is an object over it, not a mixin.
Waiting for a disk state always goes through the shared waiter, never a private poll, and
never past the call's deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from csi_disk.cloud.port import ATTACHING, CREATING, DETACHING, REINITING, Cloud, Disk
from csi_disk.deadlines import Deadline
from csi_disk.errors import NotFound
from csi_disk.locks import InFlight

# Statuses a disk passes through on its own; deciding on them would race ECS.
TRANSITIONAL = frozenset({CREATING, ATTACHING, DETACHING, REINITING})


class Waiter(Protocol):
    """The shared disk waiter (``csi_disk.cloud.waiter.DiskWaiter``)."""

    def wait(
        self, disk_id: str, until: Callable[[Disk | None], bool], timeout: float
    ) -> Disk | None: ...


def settle(waiter: Waiter, disk: Disk, deadline: Deadline) -> Disk | None:
    """Wait until ``disk`` leaves a transitional status; None once it is gone."""
    if disk.status not in TRANSITIONAL:
        return disk

    def settled(d: Disk | None) -> bool:
        return d is None or d.status not in TRANSITIONAL

    return waiter.wait(disk.id, settled, deadline.remaining())


class Disks:
    """The cloud port, the shared waiter and one in-flight lock per volume or snapshot id."""

    def __init__(self, cloud: Cloud, waiter: Waiter) -> None:
        self.cloud = cloud
        self.waiter = waiter
        self.locks = InFlight()

    def describe(self, disk_id: str) -> Disk | None:
        disks = self.cloud.describe_disks([disk_id])
        return next((d for d in disks if d.id == disk_id), None)

    def require(self, volume_id: str) -> Disk:
        disk = self.describe(volume_id)
        if disk is None:
            raise NotFound(f"volume {volume_id} does not exist")
        return disk

    def settle(self, disk: Disk, deadline: Deadline) -> Disk | None:
        """Wait until the disk leaves a transitional status; None once it is gone."""
        return settle(self.waiter, disk, deadline)

    def wait_for(
        self, disk_id: str, until: Callable[[Disk | None], bool], deadline: Deadline
    ) -> Disk | None:
        """Wait until ``until(disk)``; DeadlineExceeded naming the disk at the deadline."""
        return self.waiter.wait(disk_id, until, deadline.remaining())
