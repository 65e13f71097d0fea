"""An in-memory ECS for handler tests: zones, instances, stock, slow states and injected faults.

It follows the ECS behaviour the driver relies on: DescribeDisks ignores unknown ids,
CreateDisk dedupes on ClientToken (and answers IdempotentParameterMismatch when the same
token comes with other arguments), attaching needs the same zone and an Available disk,
one attach per instance at a time, and status changes that take a few polls when
``latency`` is set. Errors are the real ``csi_disk.cloud.errors`` classes, built from the
same ECS codes the SDK would report.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from csi_disk.cloud import port
from csi_disk.cloud.errors import EcsError, from_ecs_code
from csi_disk.cloud.port import Disk, DiskRequest, Instance, Page, Snapshot


def ecs_error(code: str, message: str = "", action: str = "") -> EcsError:
    """The error the real client raises for the ECS code ``code``."""
    return from_ecs_code(code, message or code, action=action)


@dataclass
class _Pending:
    """A status change that completes after ``ticks`` more DescribeDisks answers."""

    ticks: int
    status: str
    attachments: tuple[str, ...] | None = None
    stuck: bool = False


@dataclass
class InMemoryCloud:
    """Implements ``csi_disk.cloud.port.Cloud`` in memory; thread-safe."""

    region: str = "cn-hangzhou"
    zones: tuple[str, ...] = ("cn-hangzhou-h", "cn-hangzhou-i")
    # (zone, category) -> disks left; missing means unlimited.
    stock: dict[tuple[str, str], int] = field(default_factory=dict)
    # (zone, category) or (zone, category, performance level) that ECS refuses to create.
    unsupported: set[tuple[str, ...]] = field(default_factory=set)
    # DescribeDisks answers a transitional status (Creating, Attaching, ...) holds for.
    latency: int = 0
    # Attaches that stay in Attaching forever (instance ids).
    stuck_attach: set[str] = field(default_factory=set)
    disk_quantity: dict[str, int] = field(default_factory=dict)  # instance type -> limit
    calls: Counter[str] = field(default_factory=Counter)
    log: list[tuple[str, tuple[object, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.disks: dict[str, Disk] = {}
        self.instances: dict[str, Instance] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.tokens: dict[str, tuple[DiskRequest, str]] = {}
        self._pending: dict[str, _Pending] = {}
        self._faults: dict[str, list[BaseException]] = defaultdict(list)
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    # --- test set-up ---------------------------------------------------------------------

    def add_instance(
        self,
        instance_id: str,
        zone: str = "",
        status: str = port.RUNNING,
        instance_type: str = "ecs.g7.large",
    ) -> Instance:
        inst = Instance(
            id=instance_id,
            zone=zone or self.zones[0],
            status=status,
            instance_type=instance_type,
            region=self.region,
        )
        with self._lock:
            self.instances[instance_id] = inst
        return inst

    def set_instance_status(self, instance_id: str, status: str) -> None:
        with self._lock:
            self.instances[instance_id] = dataclasses.replace(
                self.instances[instance_id], status=status
            )

    def add_disk(self, **fields: object) -> Disk:
        """Put a disk in place directly (fields as ``Disk``); returns it."""
        with self._lock:
            fields.setdefault("id", self._new_id("d-"))
            fields.setdefault("zone", self.zones[0])
            fields.setdefault("category", "cloud_essd")
            fields.setdefault("size_gib", 20)
            fields.setdefault("status", port.AVAILABLE)
            fields.setdefault("region", self.region)
            disk_id = str(fields["id"])
            fields.setdefault("serial", disk_id.removeprefix("d-"))
            disk = Disk(**fields)  # type: ignore[arg-type]
            self.disks[disk.id] = disk
            return disk

    def fail(self, method: str, error: BaseException, times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` raise ``error``."""
        with self._lock:
            self._faults[method].extend([error] * times)

    def disk(self, disk_id: str) -> Disk:
        with self._lock:
            return self.disks[disk_id]

    # --- Cloud ---------------------------------------------------------------------------

    def create_disk(self, request: DiskRequest) -> str:
        with self._lock:
            self._enter("create_disk", request)
            if request.client_token and request.client_token in self.tokens:
                previous, disk_id = self.tokens[request.client_token]
                if previous != request:
                    raise ecs_error(
                        "IdempotentParameterMismatch",
                        "the token was used with other parameters",
                        "CreateDisk",
                    )
                return disk_id
            if request.zone not in self.zones:
                raise ecs_error("InvalidZoneId.NotFound", request.zone, "CreateDisk")
            if (request.zone, request.category) in self.unsupported or (
                request.zone,
                request.category,
                request.performance_level,
            ) in self.unsupported:
                raise ecs_error("InvalidDataDiskCategory.NotSupported", "", "CreateDisk")
            key = (request.zone, request.category)
            if key in self.stock:
                if self.stock[key] <= 0:
                    raise ecs_error("OperationDenied.NoStock", "", "CreateDisk")
                self.stock[key] -= 1
            if request.snapshot_id and request.snapshot_id not in self.snapshots:
                raise ecs_error("InvalidSnapshotId.NotFound", "", "CreateDisk")
            disk_id = self._new_id("d-")
            self.disks[disk_id] = Disk(
                id=disk_id,
                zone=request.zone,
                category=request.category,
                size_gib=request.size_gib,
                status=port.CREATING if self.latency else port.AVAILABLE,
                region=self.region,
                performance_level=request.performance_level
                or ("PL1" if request.category == "cloud_essd" else ""),
                serial=disk_id.removeprefix("d-"),
                tags=dict(request.tags),
                multi_attach=request.multi_attach,
                encrypted=request.encrypted,
                kms_key_id=request.kms_key_id,
                snapshot_id=request.snapshot_id,
                resource_group_id=request.resource_group_id,
                name=request.name,
                description=request.description,
                provisioned_iops=request.provisioned_iops or 0,
                bursting_enabled=bool(request.bursting_enabled),
            )
            if self.latency:
                self._pending[disk_id] = _Pending(self.latency, port.AVAILABLE)
            if request.client_token:
                self.tokens[request.client_token] = (request, disk_id)
            return disk_id

    def delete_disk(self, disk_id: str) -> None:
        with self._lock:
            self._enter("delete_disk", disk_id)
            disk = self._require(disk_id, "DeleteDisk")
            if disk.status != port.AVAILABLE or disk.attachments:
                raise ecs_error("IncorrectDiskStatus", disk.status, "DeleteDisk")
            del self.disks[disk_id]
            self._pending.pop(disk_id, None)

    def describe_disks(self, disk_ids: Sequence[str]) -> list[Disk]:
        with self._lock:
            self._enter("describe_disks", tuple(disk_ids))
            out = []
            for disk_id in disk_ids:
                self._tick(disk_id)
                if disk_id in self.disks:
                    out.append(self.disks[disk_id])
            return out

    def find_disks(
        self,
        *,
        tags: Mapping[str, str] | None = None,
        zone: str = "",
        instance_id: str = "",
        page_token: str = "",
        max_results: int = 100,
    ) -> Page[Disk]:
        with self._lock:
            self._enter("find_disks", tags, zone, instance_id, page_token, max_results)
            for disk_id in list(self.disks):
                self._tick(disk_id)
            matches = [
                d
                for d in sorted(self.disks.values(), key=lambda d: d.id)
                if all(d.tags.get(k) == v for k, v in (tags or {}).items())
                and (not zone or d.zone == zone)
                and (not instance_id or d.attached_to(instance_id))
            ]
            try:
                start = int(page_token) if page_token else 0
            except ValueError:
                raise ecs_error("InvalidParameter.NextToken", "", "DescribeDisks") from None
            end = start + max_results
            return Page(matches[start:end], str(end) if end < len(matches) else "")

    def attach_disk(self, disk_id: str, instance_id: str) -> None:
        with self._lock:
            self._enter("attach_disk", disk_id, instance_id)
            disk = self._require(disk_id, "AttachDisk")
            inst = self.instances.get(instance_id)
            if inst is None:
                raise ecs_error("InvalidInstanceId.NotFound", instance_id, "AttachDisk")
            if inst.zone != disk.zone:
                raise ecs_error("ResourcesNotInSameZone", "", "AttachDisk")
            if disk.attached_to(instance_id):
                raise ecs_error("IncorrectDiskStatus", "already attached", "AttachDisk")
            if disk.status not in (port.AVAILABLE, port.IN_USE) or (
                disk.attachments and not disk.multi_attach
            ):
                raise ecs_error("IncorrectDiskStatus", disk.status, "AttachDisk")
            busy = [
                d.id
                for d in self.disks.values()
                if d.status == port.ATTACHING and d.attached_to(instance_id)
            ]
            if busy:
                raise ecs_error("InvalidOperation.Conflict", "attach in progress", "AttachDisk")
            limit = self.disk_quantity.get(inst.instance_type)
            held = sum(1 for d in self.disks.values() if d.attached_to(instance_id))
            if limit is not None and held >= limit:
                raise ecs_error("InstanceDiskLimitExceeded", "", "AttachDisk")
            attachments = (*disk.attachments, instance_id)
            stuck = instance_id in self.stuck_attach
            if self.latency or stuck:
                self.disks[disk_id] = dataclasses.replace(
                    disk, status=port.ATTACHING, attachments=attachments
                )
                self._pending[disk_id] = _Pending(self.latency, port.IN_USE, stuck=stuck)
            else:
                self.disks[disk_id] = dataclasses.replace(
                    disk, status=port.IN_USE, attachments=attachments
                )

    def detach_disk(self, disk_id: str, instance_id: str) -> None:
        with self._lock:
            self._enter("detach_disk", disk_id, instance_id)
            disk = self._require(disk_id, "DetachDisk")
            if not disk.attached_to(instance_id):
                raise ecs_error("IncorrectDiskStatus.NotAttached", "", "DetachDisk")
            rest = tuple(i for i in disk.attachments if i != instance_id)
            final = port.IN_USE if rest else port.AVAILABLE
            self._pending.pop(disk_id, None)
            if self.latency:
                self.disks[disk_id] = dataclasses.replace(disk, status=port.DETACHING)
                self._pending[disk_id] = _Pending(self.latency, final, attachments=rest)
            else:
                self.disks[disk_id] = dataclasses.replace(disk, status=final, attachments=rest)

    def describe_instance(self, instance_id: str) -> Instance | None:
        with self._lock:
            self._enter("describe_instance", instance_id)
            return self.instances.get(instance_id)

    def instance_disk_quantity(self, instance_type: str) -> int | None:
        with self._lock:
            self._enter("instance_disk_quantity", instance_type)
            return self.disk_quantity.get(instance_type)

    def resize_disk(self, disk_id: str, size_gib: int, *, online: bool) -> None:
        with self._lock:
            self._enter("resize_disk", disk_id, size_gib, online)
            disk = self._require(disk_id, "ResizeDisk")
            if size_gib < disk.size_gib:
                raise ecs_error("InvalidDiskSize.TooSmall", "", "ResizeDisk")
            if disk.attachments and not online:
                raise ecs_error("IncorrectDiskStatus", disk.status, "ResizeDisk")
            self.disks[disk_id] = dataclasses.replace(disk, size_gib=size_gib)

    def modify_disk_spec(
        self,
        disk_id: str,
        *,
        category: str = "",
        performance_level: str = "",
        provisioned_iops: int | None = None,
        bursting_enabled: bool | None = None,
    ) -> None:
        with self._lock:
            self._enter(
                "modify_disk_spec",
                disk_id,
                category,
                performance_level,
                provisioned_iops,
                bursting_enabled,
            )
            disk = self._require(disk_id, "ModifyDiskSpec")
            changes: dict[str, object] = {}
            if category:
                changes["category"] = category
            if performance_level:
                changes["performance_level"] = performance_level
            if provisioned_iops is not None:
                changes["provisioned_iops"] = provisioned_iops
            if bursting_enabled is not None:
                changes["bursting_enabled"] = bursting_enabled
            self.disks[disk_id] = dataclasses.replace(disk, **changes)  # type: ignore[arg-type]

    def create_snapshot(
        self,
        disk_id: str,
        *,
        name: str,
        client_token: str,
        tags: Mapping[str, str] | None = None,
        retention_days: int | None = None,
    ) -> str:
        with self._lock:
            self._enter("create_snapshot", disk_id, name, client_token)
            disk = self._require(disk_id, "CreateSnapshot")
            for snap in self.snapshots.values():
                if client_token and snap.tags.get("_token") == client_token:
                    return snap.id
            snap_id = self._new_id("s-")
            all_tags = dict(tags or {})
            if client_token:
                all_tags["_token"] = client_token
            self.snapshots[snap_id] = Snapshot(
                id=snap_id,
                source_disk_id=disk_id,
                source_disk_size_gib=disk.size_gib,
                status=port.SNAPSHOT_ACCOMPLISHED,
                progress="100%",
                name=name,
                tags=all_tags,
            )
            return snap_id

    def delete_snapshot(self, snapshot_id: str, *, force: bool = False) -> None:
        with self._lock:
            self._enter("delete_snapshot", snapshot_id, force)
            if snapshot_id not in self.snapshots:
                raise ecs_error("InvalidSnapshotId.NotFound", "", "DeleteSnapshot")
            del self.snapshots[snapshot_id]

    def describe_snapshots(
        self,
        *,
        snapshot_ids: Sequence[str] = (),
        disk_id: str = "",
        tags: Mapping[str, str] | None = None,
        page_token: str = "",
        max_results: int = 100,
    ) -> Page[Snapshot]:
        with self._lock:
            self._enter("describe_snapshots", tuple(snapshot_ids), disk_id, tags, page_token)
            matches = [
                s
                for s in sorted(self.snapshots.values(), key=lambda s: s.id)
                if (not snapshot_ids or s.id in snapshot_ids)
                and (not disk_id or s.source_disk_id == disk_id)
                and all(s.tags.get(k) == v for k, v in (tags or {}).items())
            ]
            start = int(page_token) if page_token else 0
            end = start + max_results
            return Page(matches[start:end], str(end) if end < len(matches) else "")

    # --- internals -----------------------------------------------------------------------

    def _enter(self, method: str, *args: object) -> None:
        self.calls[method] += 1
        self.log.append((method, args))
        faults = self._faults.get(method)
        if faults:
            raise faults.pop(0)

    def _require(self, disk_id: str, action: str) -> Disk:
        disk = self.disks.get(disk_id)
        if disk is None:
            raise ecs_error("InvalidDiskId.NotFound", disk_id, action)
        return disk

    def _tick(self, disk_id: str) -> None:
        pending = self._pending.get(disk_id)
        if pending is None or disk_id not in self.disks or pending.stuck:
            return
        if pending.ticks > 0:
            pending.ticks -= 1
            return
        disk = self.disks[disk_id]
        changes: dict[str, object] = {"status": pending.status}
        if pending.attachments is not None:
            changes["attachments"] = pending.attachments
        self.disks[disk_id] = dataclasses.replace(disk, **changes)  # type: ignore[arg-type]
        del self._pending[disk_id]

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}fake{next(self._ids):016d}"
