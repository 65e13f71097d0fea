"""Attaching and detaching disks by ECS's rules, shared by both attach modes.

ControllerPublish (controller attach mode) and NodeStage (node attach mode) must decide
alike: a disk held by a live instance is not stolen (its unflushed writes would be lost),
a disk is only attached within its own zone, and each instance gets at most one attach and
one detach in flight, because ECS refuses more on instances without the concurrency
feature. Every decision starts from a fresh DescribeDisks, so a restarted plugin converges.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from csi_disk.cloud.port import ATTACHING, DETACHING, IN_USE, RUNNING, Cloud, Disk
from csi_disk.cloud.waiter import DiskWaiter
from csi_disk.config import Config
from csi_disk.errors import (
    Aborted,
    DeadlineExceeded,
    DriverError,
    FailedPrecondition,
    NotFound,
)

log = logging.getLogger(__name__)


class _InstanceSlots:
    """One attach and one detach in flight per instance; queued detaches go first.

    Detaches free capacity (an instance holds a bounded number of disks), so an attach
    waits while any detach is queued for the same instance.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.attaching = False
        self.detaching = False
        self.detaches_waiting = 0

    @contextmanager
    def attach(self, instance_id: str, timeout: float) -> Iterator[None]:
        with self.cond:
            free = self.cond.wait_for(
                lambda: not self.attaching and self.detaches_waiting == 0, timeout
            )
            if not free:
                raise Aborted(f"instance {instance_id} is busy with other attachments; retry")
            self.attaching = True
        try:
            yield
        finally:
            with self.cond:
                self.attaching = False
                self.cond.notify_all()

    @contextmanager
    def detach(self, instance_id: str, timeout: float) -> Iterator[None]:
        with self.cond:
            self.detaches_waiting += 1
            try:
                free = self.cond.wait_for(lambda: not self.detaching, timeout)
            finally:
                self.detaches_waiting -= 1
            if not free:
                self.cond.notify_all()
                raise Aborted(f"instance {instance_id} is busy with other detachments; retry")
            self.detaching = True
        try:
            yield
        finally:
            with self.cond:
                self.detaching = False
                self.cond.notify_all()


class Attacher:
    """Attach/detach one disk to/from one instance and wait until ECS has finished."""

    def __init__(self, cloud: Cloud, waiter: DiskWaiter, config: Config) -> None:
        self._cloud = cloud
        self._waiter = waiter
        self._timeout = config.operation_timeout
        self._allow_takeover = config.allow_takeover
        self._slots: dict[str, _InstanceSlots] = {}
        self._slots_lock = threading.Lock()

    def _slots_of(self, instance_id: str) -> _InstanceSlots:
        with self._slots_lock:
            return self._slots.setdefault(instance_id, _InstanceSlots())

    def _describe(self, disk_id: str) -> Disk | None:
        found = [d for d in self._cloud.describe_disks([disk_id]) if d.id == disk_id]
        return found[0] if found else None

    # --- attach -------------------------------------------------------------------------

    def attach(self, disk_id: str, instance_id: str) -> Disk:
        """Attach ``disk_id`` to ``instance_id``; OK at once when it is already there."""
        disk = self._describe(disk_id)
        if disk is None:
            raise NotFound(f"disk {disk_id} does not exist")
        instance = self._cloud.describe_instance(instance_id)
        if instance is None:
            raise NotFound(f"instance {instance_id} does not exist")
        if disk.zone != instance.zone:
            raise FailedPrecondition(
                f"disk {disk_id} is in zone {disk.zone} but instance {instance_id} is in "
                f"{instance.zone}: a disk attaches only within its zone"
            )
        if disk.attached_to(instance_id):
            if disk.status == ATTACHING:
                return self._wait_attached(disk_id, instance_id)
            if disk.status != DETACHING:
                return disk
            disk = self._wait_settled(disk_id)
        if not disk.multi_attach:
            for other in disk.attachments:
                if other != instance_id:
                    self._release_from(disk_id, other, wanted_by=instance_id)
        with self._slots_of(instance_id).attach(instance_id, self._timeout):
            current = self._describe(disk_id)
            if current is None:
                raise NotFound(f"disk {disk_id} does not exist")
            if current.attached_to(instance_id) and current.status != ATTACHING:
                return current
            if not current.attached_to(instance_id):
                log.info("attaching disk %s to instance %s", disk_id, instance_id)
                try:
                    self._cloud.attach_disk(disk_id, instance_id)
                except DriverError:
                    again = self._describe(disk_id)
                    if again is None or not again.attached_to(instance_id):
                        raise
            return self._wait_attached(disk_id, instance_id)

    def _release_from(self, disk_id: str, holder: str, wanted_by: str) -> None:
        """Detach ``disk_id`` from another instance, but only when that one is not Running."""
        instance = self._cloud.describe_instance(holder)
        if instance is not None and instance.status == RUNNING and not self._allow_takeover:
            raise FailedPrecondition(
                f"disk {disk_id} is attached to instance {holder}, which is Running; "
                f"detach it there before using it on {wanted_by}"
            )
        log.warning(
            "disk %s is still attached to instance %s (%s): detaching it for %s",
            disk_id,
            holder,
            instance.status if instance else "gone",
            wanted_by,
        )
        self.detach(disk_id, holder)

    def _wait_settled(self, disk_id: str) -> Disk:
        """Wait for a Detaching disk to finish, so the next decision sees a stable state."""
        disk = self._waiter.wait(
            disk_id, lambda d: d is None or d.status != DETACHING, self._timeout
        )
        if disk is None:
            raise NotFound(f"disk {disk_id} does not exist")
        return disk

    def _wait_attached(self, disk_id: str, instance_id: str) -> Disk:
        def attached(d: Disk | None) -> bool:
            return d is None or (d.attached_to(instance_id) and d.status == IN_USE)

        try:
            disk = self._waiter.wait(disk_id, attached, self._timeout)
        except DeadlineExceeded as err:
            # A disk stuck Attaching holds the instance's only attach slot; give it back
            # and let the caller retry from a clean state.
            log.warning("disk %s stuck attaching to %s: detaching it", disk_id, instance_id)
            try:
                self._cloud.detach_disk(disk_id, instance_id)
            except DriverError as detach_err:
                log.warning("detaching stuck disk %s failed: %s", disk_id, detach_err)
            raise Aborted(f"{err.message}; the attach was undone, retry") from err
        if disk is None:
            raise NotFound(f"disk {disk_id} was deleted while attaching")
        return disk

    # --- detach -------------------------------------------------------------------------

    def detach(self, disk_id: str, instance_id: str) -> None:
        """Detach ``disk_id`` from ``instance_id``; OK when it is gone or not attached there."""
        disk = self._describe(disk_id)
        if disk is None or not disk.attached_to(instance_id):
            return
        with self._slots_of(instance_id).detach(instance_id, self._timeout):
            if disk.status == ATTACHING:
                disk = self._waiter.wait(
                    disk_id, lambda d: d is None or d.status != ATTACHING, self._timeout
                )
            if disk is None or not disk.attached_to(instance_id):
                return
            if disk.status != DETACHING:
                log.info("detaching disk %s from instance %s", disk_id, instance_id)
                try:
                    self._cloud.detach_disk(disk_id, instance_id)
                except NotFound:
                    return
                except DriverError:
                    again = self._describe(disk_id)
                    still = again is not None and again.attached_to(instance_id)
                    if still and again is not None and again.status != DETACHING:
                        raise
            self._waiter.wait(
                disk_id,
                lambda d: d is None or not d.attached_to(instance_id),
                self._timeout,
            )
