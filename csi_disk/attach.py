"""Attaching and detaching disks by ECS's rules: the one implementation for both attach modes.

ControllerPublish/Unpublish and DeleteVolume (controller) and NodeStage/Unstage (node attach
mode) must decide alike: a disk held by a live instance is not stolen (its unflushed writes
would be lost), a disk is only attached within its own zone, and each instance gets at most
one attach and one detach in flight, detaches first, because ECS refuses more on instances
without the concurrency feature.

ECS is asked first: AttachDisk or DetachDisk goes out at once, and the disk is described
only when ECS refuses (it is creating, attached elsewhere, in transition), so the common
case costs the one call and a share of the shared waiter's polls. Every decision after a
refusal starts from a fresh DescribeDisks, and every wait goes through the shared waiter,
so a restarted plugin converges without a private poll.

Waits and queues end at the call's deadline; an attach still in flight then is left to
finish, and the retry waits for it. Only an attach Attaching for --operation-timeout since a
call first waited for it counts as stuck and is undone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from csi_disk import categories
from csi_disk.cloud.errors import (
    EcsError,
    names_missing_instance,
    refused_for_disk_status,
    says_not_attached,
    says_other_zone,
)
from csi_disk.cloud.instances import InstanceFacts
from csi_disk.cloud.port import ATTACHING, DETACHING, IN_USE, RUNNING, Cloud, Disk
from csi_disk.config import Config
from csi_disk.deadlines import Deadline
from csi_disk.disks import Waiter, settle
from csi_disk.errors import Aborted, DeadlineExceeded, DriverError, FailedPrecondition, NotFound
from csi_disk.locks import InstanceSlots

log = logging.getLogger(__name__)

# Refusals an attach or detach answers by looking at the disk and trying again; past this
# many ECS's answers and the disk's description disagree, and the caller's retry decides.
ROUNDS = 3


class Attacher:
    """Attach/detach one disk to/from one instance and wait until ECS has finished."""

    def __init__(
        self,
        cloud: Cloud,
        waiter: Waiter,
        config: Config,
        *,
        instances: InstanceFacts | None = None,
    ) -> None:
        self._cloud = cloud
        self._waiter = waiter
        self._timeout = config.operation_timeout
        self._allow_takeover = config.allow_takeover
        self.instances = instances or InstanceFacts(cloud)
        self.slots = InstanceSlots()
        # (disk, instance) -> when the first call waiting for that attach began; None for
        # an attach still in flight whose clock starts again with the next call.
        self._attaching_since: dict[tuple[str, str], float | None] = {}
        self._since_lock = threading.Lock()

    def _deadline(self, deadline: Deadline | None) -> Deadline:
        """The caller's deadline; without one, --operation-timeout from now."""
        return deadline if deadline is not None else Deadline.after(self._timeout)

    def _describe(self, disk_id: str) -> Disk | None:
        found = [d for d in self._cloud.describe_disks([disk_id]) if d.id == disk_id]
        return found[0] if found else None

    def _wait(
        self, disk_id: str, until: Callable[[Disk | None], bool], deadline: Deadline
    ) -> Disk | None:
        return self._waiter.wait(disk_id, until, deadline.remaining())

    # --- attach -------------------------------------------------------------------------

    def attach(
        self,
        disk_id: str,
        instance_id: str,
        deadline: Deadline | None = None,
        *,
        known: Disk | None = None,
    ) -> Disk:
        """Attach ``disk_id`` to ``instance_id`` and return it In_use; OK when already there.

        ``known`` is the disk as the caller just described it: then what it shows (a
        transition to wait out, holders to free) is settled before AttachDisk is sent.
        """
        deadline = self._deadline(deadline)
        if known is None and self._waited_for(disk_id, instance_id):
            # An earlier call's attach is still in flight (its caller gave up first): wait
            # for it rather than ask ECS for another.
            return self._wait_attached(disk_id, instance_id, deadline)
        disk = known
        refusal: EcsError | None = None
        for _ in range(ROUNDS):
            if disk is not None:
                done = self._prepare(disk, instance_id, deadline)
                if done is not None:
                    return done
            outcome = self._send_attach(disk_id, instance_id, deadline)
            if isinstance(outcome, Disk):
                return outcome
            refusal = outcome
            disk = self._describe(disk_id)
            if disk is None:
                raise NotFound(f"disk {disk_id} does not exist")
        assert refusal is not None
        raise Aborted(
            f"disk {disk_id} could not be attached to {instance_id} yet: {refusal.message}"
        )

    def _prepare(self, disk: Disk, instance_id: str, deadline: Deadline) -> Disk | None:
        """Make ``disk`` ready for AttachDisk: wait out its transition, free it from other
        holders. The disk when it is attached here already, else None."""
        if disk.attached_to(instance_id) and disk.status == ATTACHING:
            return self._wait_attached(disk.id, instance_id, deadline)
        settled = settle(self._waiter, disk, deadline)
        if settled is None:
            raise NotFound(f"disk {disk.id} does not exist")
        if settled.attached_to(instance_id):
            return settled
        if not settled.multi_attach and settled.attachments:
            # Never free a disk for an instance it cannot be attached to.
            self._check_zone(settled, instance_id)
            self.release(
                settled,
                deadline,
                keep=instance_id,
                force=self._allow_takeover,
                purpose=f"using it on {instance_id}",
            )
        return None

    def _send_attach(self, disk_id: str, instance_id: str, deadline: Deadline) -> Disk | EcsError:
        """AttachDisk, in the instance's attach slot, and the wait for it; the refusal when
        ECS refuses for the disk's status, which a look at the disk explains."""
        with self.slots.attach(instance_id, deadline.remaining()):
            try:
                self._cloud.attach_disk(disk_id, instance_id)
            except EcsError as err:
                if refused_for_disk_status(err):
                    return err
                self._attach_failed(err, disk_id, instance_id)
            log.info("attaching disk %s to instance %s", disk_id, instance_id)
            return self._wait_attached(disk_id, instance_id, deadline)

    def _attach_failed(self, err: EcsError, disk_id: str, instance_id: str) -> None:
        """Raise what a failed AttachDisk means; return only when its answer was lost but
        the attach happened."""
        self.instances.note(err, instance_id)
        if names_missing_instance(err):
            raise NotFound(f"node {instance_id} is not an ECS instance in this region") from None
        if isinstance(err, NotFound):
            raise NotFound(f"volume {disk_id} does not exist") from None
        if says_other_zone(err):
            described = self._describe(disk_id)
            if described is not None:
                self._check_zone(described, instance_id)
            raise err
        if not err.retryable or err.not_applied:
            raise err
        again = self._describe(disk_id)
        if again is None or not again.attached_to(instance_id):
            raise err

    def _check_zone(self, disk: Disk, instance_id: str) -> None:
        """A zonal disk attaches only within its zone; a regional one in any zone of it."""
        if categories.is_regional(disk.category):
            return
        instance = self.instances.get(instance_id)
        if instance is None:
            raise NotFound(f"node {instance_id} is not an ECS instance in this region")
        if disk.zone != instance.zone:
            raise FailedPrecondition(
                f"disk {disk.id} is in zone {disk.zone} but instance {instance_id} is in "
                f"{instance.zone}: a disk attaches only within its zone"
            )

    def _wait_attached(self, disk_id: str, instance_id: str, deadline: Deadline) -> Disk:
        """Wait for the attach until the call's deadline, or until it has been Attaching
        for --operation-timeout since the first call waited for it: then it is stuck and
        is undone. An attach still in flight at the caller's deadline is left to the retry,
        which goes on counting from the same start."""

        def attached(d: Disk | None) -> bool:
            return d is None or (d.attached_to(instance_id) and d.status == IN_USE)

        key = (disk_id, instance_id)
        with self._since_lock:
            since = self._attaching_since.get(key)
            if since is None:
                since = self._attaching_since[key] = deadline.start
        stuck_at = Deadline(at=since + self._timeout, start=since)
        stuck = stuck_at.at <= deadline.at
        try:
            disk = self._wait(disk_id, attached, stuck_at if stuck else deadline)
        except DeadlineExceeded as err:
            try:
                disk = self._describe(disk_id)
            except DriverError as describe_err:
                log.warning(
                    "could not look at disk %s after its attach timed out: %s",
                    disk_id,
                    describe_err,
                )
                raise err from None
            if disk is not None and not attached(disk):
                if disk.attached_to(instance_id) and not stuck:
                    raise  # the caller gave up first; its retry waits for this attach
                self._forget(key)
                if not disk.attached_to(instance_id):
                    raise
                self._undo_stuck_attach(disk_id, instance_id, err)
        self._forget(key)
        if disk is None:
            raise NotFound(f"disk {disk_id} was deleted while attaching")
        return disk

    def _waited_for(self, disk_id: str, instance_id: str) -> bool:
        with self._since_lock:
            return (disk_id, instance_id) in self._attaching_since

    def _forget(self, key: tuple[str, str]) -> None:
        with self._since_lock:
            self._attaching_since.pop(key, None)

    def _undo_stuck_attach(self, disk_id: str, instance_id: str, err: DeadlineExceeded) -> None:
        """Give back the instance's attach slot that a disk stuck Attaching holds; raises
        Aborted once the attach is undone, so the caller's retry starts from a clean state."""
        log.warning("disk %s stuck attaching to %s: detaching it", disk_id, instance_id)
        try:
            self._cloud.detach_disk(disk_id, instance_id)
        except DriverError as detach_err:
            log.warning("detaching stuck disk %s failed: %s", disk_id, detach_err)
            with self._since_lock:  # still in flight: the retry waits, its clock anew
                self._attaching_since[(disk_id, instance_id)] = None
            raise err from None
        raise Aborted(f"{err.message}; the attach was undone, retry") from err

    # --- detach -------------------------------------------------------------------------

    def release(
        self,
        disk: Disk,
        deadline: Deadline | None = None,
        *,
        keep: str = "",
        force: bool,
        purpose: str,
    ) -> None:
        """Detach ``disk`` from every holder but ``keep`` before ``purpose``.

        A Running holder may still have unflushed writes: unless ``force``, it is refused
        with FailedPrecondition before anything is detached, so a refusal changes nothing.
        """
        deadline = self._deadline(deadline)
        holders = [h for h in disk.attachments if h != keep]
        states: dict[str, str] = {}
        for holder in holders:
            # Asked afresh: detaching from an instance started again since a cached look
            # would lose its writes.
            instance = self.instances.get(holder, fresh=True)
            if instance is not None and instance.status == RUNNING and not force:
                raise FailedPrecondition(
                    f"disk {disk.id} is attached to instance {holder}, which is Running; "
                    f"detach it there before {purpose} (a running instance may still hold "
                    "unflushed writes)"
                )
            states[holder] = instance.status if instance is not None else "gone"
        for holder in holders:
            log.warning(
                "disk %s is still attached to instance %s (%s): detaching it before %s",
                disk.id,
                holder,
                states[holder],
                purpose,
            )
            self.detach(disk.id, holder, deadline)

    def detach(self, disk_id: str, instance_id: str, deadline: Deadline | None = None) -> None:
        """Detach ``disk_id`` from ``instance_id``; OK when it is gone or not attached there.

        DetachDisk goes first: ECS answers that the disk is not attached there (nothing to
        do), or in transition (looked at, waited out, tried again). Returns once the disk no
        longer lists the instance and is not Detaching, so a DeleteVolume or an attach
        elsewhere that follows finds it settled.
        """
        deadline = self._deadline(deadline)
        with self.slots.detach(instance_id, deadline.remaining()):
            for _ in range(ROUNDS):
                try:
                    self._cloud.detach_disk(disk_id, instance_id)
                except EcsError as err:
                    if isinstance(err, NotFound) or says_not_attached(err):
                        return  # the disk or the instance is gone, or it is not attached
                    self.instances.note(err, instance_id)
                    lost = err.retryable and not err.not_applied
                    if not (refused_for_disk_status(err) or lost):
                        raise
                    disk = self._describe(disk_id)
                    if disk is None or not disk.attached_to(instance_id):
                        return
                    if disk.status == DETACHING:
                        break  # someone's detach (perhaps this one) is under way
                    if disk.status != ATTACHING:
                        raise
                    self._wait(disk_id, lambda d: d is None or d.status != ATTACHING, deadline)
                    continue
                log.info("detaching disk %s from instance %s", disk_id, instance_id)
                break
            else:
                raise Aborted(f"disk {disk_id} could not be detached from {instance_id} yet")
            self._wait(
                disk_id,
                lambda d: d is None or (not d.attached_to(instance_id) and d.status != DETACHING),
                deadline,
            )
