"""In-memory ports for handler tests: an ECS (``InMemoryCloud``) and a host (``FakeHost``).

The ECS has zones, instances, stock, slow states and injected faults.

It follows the ECS emulator's rules (csi_disk_emulator is this project's reference of ECS
behaviour), reusing its size rules: DescribeDisks ignores unknown ids; CreateDisk dedupes on
ClientToken (IdempotentParameterMismatch when the same token comes with other arguments),
checks category, size and performance level, restores only from an accomplished snapshot at
least its size; AttachDisk needs a settled disk, a Running or Stopped instance in the same
zone, and one attach in flight per instance (DetachDisk one detach); ResizeDisk only grows,
online only an In_use disk; ModifyDiskSpec checks the level and size rules and refuses a
change while the previous one lands or cools down; snapshots progress before they are
accomplished and DeleteSnapshot needs ``force`` for one a disk was restored from. Status
changes take ``latency`` DescribeDisks answers, snapshots ``snapshot_latency``
DescribeSnapshots answers. Errors are built from tests/ecs_codes.py, not from the driver's
own code table, and behave as ``EcsCloud`` passes them on (it swallows ModifyDiskSpec's
"no change").
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from csi_disk.cloud import port
from csi_disk.cloud.port import Disk, DiskOffer, DiskRequest, Instance, Page, Snapshot
from csi_disk.cloud.quotas import in_background
from csi_disk.errors import DeadlineExceeded, DriverError
from csi_disk.host.filesystems import Probe, VolumeStats
from csi_disk.host.mounts import Mount
from csi_disk_emulator.actions.disks import MIN_GIB, PERFORMANCE_LEVELS, size_range
from csi_disk_emulator.actions.resize import SPEC_CATEGORIES
from csi_disk_emulator.actions.snapshots import DEFAULT_QUOTA_PER_DISK
from csi_disk_emulator.topology import (
    ALL_CATEGORIES,
    INSTANCE_TYPES,
    REGIONAL_CATEGORIES,
    ZONAL_CATEGORIES,
    is_regional,
)
from tests.ecs_codes import ecs_error

__all__ = ["HERE", "FakeHost", "InMemoryCloud", "ecs_error"]

SETTLED = (port.AVAILABLE, port.IN_USE)
LIVE_INSTANCE = (port.RUNNING, port.STOPPED)


@dataclass
class _Pending:
    """A status change that completes after ``ticks`` more DescribeDisks answers."""

    ticks: int
    status: str
    attachments: tuple[str, ...] | None = None
    stuck: bool = False


@dataclass
class _SpecChange:
    """A ModifyDiskSpec landing after ``ticks`` DescribeDisks answers, then cooling down."""

    ticks: int
    changes: dict[str, object]
    cooling: int


@dataclass
class InMemoryCloud:
    """Implements ``csi_disk.cloud.port.Cloud`` in memory; thread-safe."""

    region: str = "cn-hangzhou"
    zones: tuple[str, ...] = ("cn-hangzhou-h", "cn-hangzhou-i")
    # (zone, category) -> disks left; missing means unlimited. The place of a regional
    # category is the region.
    stock: dict[tuple[str, str], int] = field(default_factory=dict)
    # (zone, category) whose supply is closed (low): ClosedWithStock or ClosedWithoutStock.
    closed: set[tuple[str, str]] = field(default_factory=set)
    # instance type -> the categories its family attaches (the emulator's table by default).
    families: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {n: t.categories for n, t in INSTANCE_TYPES.items()}
    )
    regional_categories: tuple[str, ...] = REGIONAL_CATEGORIES
    # (zone, category) or (zone, category, performance level) that ECS refuses to create.
    unsupported: set[tuple[str, ...]] = field(default_factory=set)
    # DescribeDisks answers a transitional status (Creating, Attaching, ...) holds for.
    latency: int = 0
    # DescribeSnapshots answers a new snapshot stays progressing for.
    snapshot_latency: int = 1
    # DescribeDisks answers after a spec change lands during which ECS refuses another.
    cooling: int = 2
    # Attaches that stay in Attaching forever (instance ids).
    stuck_attach: set[str] = field(default_factory=set)
    disk_quantity: dict[str, int] = field(default_factory=dict)  # instance type -> limit
    calls: Counter[str] = field(default_factory=Counter)
    # The calls among ``calls`` made in the background: the shared waiter's polls.
    polls: Counter[str] = field(default_factory=Counter)
    log: list[tuple[str, tuple[object, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.disks: dict[str, Disk] = {}
        self.instances: dict[str, Instance] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.tokens: dict[str, tuple[DiskRequest, str]] = {}
        self.snapshot_tokens: dict[str, tuple[tuple[object, ...], str]] = {}
        self._pending: dict[str, _Pending] = {}
        self._spec: dict[str, _SpecChange] = {}
        self._snapshot_ticks: dict[str, int] = {}
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

    def end_cooling(self, disk_id: str) -> None:
        """Let the disk's last spec change land and its cooling period end now."""
        with self._lock:
            if disk_id in self._spec:
                self._spec[disk_id].ticks = 0
                self._spec[disk_id].cooling = 0
                self._land_spec(disk_id)

    def hurry(self, disk_id: str) -> None:
        """Let the disk's pending status change (Creating, Attaching, ...) finish at the next
        DescribeDisks, however long ``latency`` made it."""
        with self._lock:
            if disk_id in self._pending:
                self._pending[disk_id].ticks = 0

    def release_stuck_attach(self, instance_id: str) -> None:
        """Let attaches stuck on ``instance_id`` finish at the next DescribeDisks."""
        with self._lock:
            self.stuck_attach.discard(instance_id)
            for pending in self._pending.values():
                pending.stuck = False

    # --- Cloud ---------------------------------------------------------------------------

    def create_disk(self, request: DiskRequest) -> str:
        with self._lock:
            self._enter("create_disk", request)
            if len(request.client_token) > 64:
                raise ecs_error("InvalidParameter", "ClientToken", "CreateDisk")
            if request.client_token and request.client_token in self.tokens:
                previous, disk_id = self.tokens[request.client_token]
                if previous != request:
                    raise ecs_error("IdempotentParameterMismatch", "", "CreateDisk")
                return disk_id
            regional = is_regional(request.category)
            if (request.zone or not regional) and request.zone not in self.zones:
                raise ecs_error("InvalidZoneId.NotFound", request.zone, "CreateDisk")
            if request.category not in ALL_CATEGORIES:
                raise ecs_error("InvalidDiskCategory.ValueNotSupported", "", "CreateDisk")
            level = ""
            if request.category == "cloud_essd":
                level = request.performance_level or "PL1"
                if level not in PERFORMANCE_LEVELS:
                    raise ecs_error("InvalidPerformanceLevel.Malformed", "", "CreateDisk")
            size = request.size_gib
            if request.snapshot_id:
                snap = self.snapshots.get(request.snapshot_id)
                if snap is None:
                    raise ecs_error("InvalidSnapshotId.NotFound", "", "CreateDisk")
                if snap.status != port.SNAPSHOT_ACCOMPLISHED:
                    raise ecs_error("InvalidSnapshot.NotReady", "", "CreateDisk")
                if size < snap.source_disk_size_gib:
                    raise ecs_error("InvalidDiskSize.TooSmall", "", "CreateDisk")
            low, high = size_range(request.category, level or "PL1")
            if not low <= size <= high:
                raise ecs_error("InvalidDiskSize.NotSupported", f"{size} GiB", "CreateDisk")
            place = self.region if regional else request.zone
            if (place, request.category) in self.unsupported or (
                place,
                request.category,
                request.performance_level,
            ) in self.unsupported:
                raise ecs_error("InvalidDataDiskCategory.NotSupported", "", "CreateDisk")
            if regional and request.category not in self.regional_categories:
                raise ecs_error("InvalidDataDiskCategory.NotSupported", "", "CreateDisk")
            key = (place, request.category)
            if key in self.stock:
                if self.stock[key] <= 0:
                    raise ecs_error("OperationDenied.NoStock", "", "CreateDisk")
                self.stock[key] -= 1
            disk_id = self._new_id("d-")
            self.disks[disk_id] = Disk(
                id=disk_id,
                zone="" if regional else request.zone,
                category=request.category,
                size_gib=size,
                status=port.CREATING if self.latency else port.AVAILABLE,
                region=self.region,
                performance_level=level,
                serial=disk_id.removeprefix("d-"),
                tags=dict(request.tags),
                multi_attach=request.multi_attach,
                encrypted=request.encrypted,
                kms_key_id=request.kms_key_id if request.encrypted else "",
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
            if disk.status == port.CREATING:
                raise ecs_error("IncorrectDiskStatus.Initializing", "", "DeleteDisk")
            if disk.attachments:
                raise ecs_error("IncorrectDiskStatus", disk.status, "DeleteDisk")
            del self.disks[disk_id]
            self._pending.pop(disk_id, None)
            self._spec.pop(disk_id, None)

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
            return self._page(matches, page_token, max_results, "DescribeDisks")

    def attach_disk(self, disk_id: str, instance_id: str) -> None:
        with self._lock:
            self._enter("attach_disk", disk_id, instance_id)
            inst = self.instances.get(instance_id)
            if inst is None:
                raise ecs_error("InvalidInstanceId.NotFound", instance_id, "AttachDisk")
            disk = self._require(disk_id, "AttachDisk")
            if disk.status == port.CREATING:
                raise ecs_error("IncorrectDiskStatus.Initializing", "", "AttachDisk")
            if disk.status in (port.ATTACHING, port.DETACHING):
                raise ecs_error("IncorrectDiskStatus", f"The disk is {disk.status}.", "AttachDisk")
            if disk.attached_to(instance_id):
                raise ecs_error("IncorrectDiskStatus", "already attached", "AttachDisk")
            if disk.attachments and not disk.multi_attach:
                raise ecs_error("IncorrectDiskStatus", "attached elsewhere", "AttachDisk")
            if inst.status not in LIVE_INSTANCE:
                raise ecs_error("IncorrectInstanceStatus", inst.status, "AttachDisk")
            if inst.zone != disk.zone and not is_regional(disk.category):
                raise ecs_error("ResourcesNotInSameZone", "", "AttachDisk")
            attachable = self.families.get(inst.instance_type)
            if attachable is not None and disk.category not in attachable:
                raise ecs_error(
                    "InvalidInstanceType.NotSupportDiskCategory", inst.instance_type, "AttachDisk"
                )
            on_instance = [d for d in self.disks.values() if d.attached_to(instance_id)]
            limit = self.disk_quantity.get(inst.instance_type)
            if limit is not None and len(on_instance) >= limit:
                raise ecs_error("InstanceDiskLimitExceeded", "", "AttachDisk")
            if any(d.status == port.ATTACHING for d in on_instance):
                raise ecs_error(
                    "OperationConflict.DisksAttachingParallellyExceed", "", "AttachDisk"
                )
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
            if instance_id not in self.instances:
                raise ecs_error("InvalidInstanceId.NotFound", instance_id, "DetachDisk")
            disk = self._require(disk_id, "DetachDisk")
            if not disk.attached_to(instance_id):
                raise ecs_error("DependencyViolation", "", "DetachDisk")
            if disk.status in (port.ATTACHING, port.DETACHING):
                raise ecs_error("IncorrectDiskStatus", f"The disk is {disk.status}.", "DetachDisk")
            detaching = [
                d
                for d in self.disks.values()
                if d.status == port.DETACHING and d.attached_to(instance_id)
            ]
            if detaching:
                raise ecs_error("InvalidOperation.Conflict", "", "DetachDisk")
            rest = tuple(i for i in disk.attachments if i != instance_id)
            final = port.IN_USE if rest else port.AVAILABLE
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

    def available_disks(
        self, *, zone: str = "", instance_type: str = "", regional: bool = False
    ) -> list[DiskOffer]:
        action = "DescribeAvailableResource"
        with self._lock:
            self._enter("available_disks", zone, instance_type, regional)
            if zone and zone not in self.zones:
                raise ecs_error("InvalidZoneId.NotFound", zone, action)
            attachable = self.families.get(instance_type) if instance_type else None
            if instance_type and attachable is None:
                raise ecs_error("InvalidInstanceType.ValueNotSupported", instance_type, action)
            if regional:
                places = [("", self.region, self.regional_categories)]
            else:
                places = [(z, z, ZONAL_CATEGORIES) for z in self.zones if not zone or z == zone]
            offers = []
            for zone_id, place, sold in places:
                for category in sold:
                    if (place, category) in self.unsupported:
                        continue
                    if attachable is not None and category not in attachable:
                        continue
                    left = self.stock.get((place, category), 1) > 0
                    closed = (place, category) in self.closed
                    state = ("Closed" if closed else "") + ("WithStock" if left else "WithoutStock")
                    levels = PERFORMANCE_LEVELS if category == "cloud_essd" else ("PL1",)
                    offers.append(
                        DiskOffer(
                            zone=zone_id,
                            category=category,
                            status="Available" if left else "SoldOut",
                            status_category=state,
                            min_gib=min(size_range(category, lvl)[0] for lvl in levels),
                            max_gib=size_range(category, "PL1")[1],
                        )
                    )
            return offers

    def resize_disk(self, disk_id: str, size_gib: int, *, online: bool) -> None:
        with self._lock:
            self._enter("resize_disk", disk_id, size_gib, online)
            disk = self._settled(disk_id, "ResizeDisk")
            if size_gib <= disk.size_gib:
                raise ecs_error("InvalidDiskSize.TooSmall", f"{size_gib} GiB", "ResizeDisk")
            _, high = size_range(disk.category, disk.performance_level or "PL1")
            if size_gib > high:
                raise ecs_error("InvalidParameter", "NewSize", "ResizeDisk")
            if online and disk.category == "cloud":
                raise ecs_error("OperationDenied", "basic disks resize offline", "ResizeDisk")
            if online and disk.status != port.IN_USE:
                raise ecs_error("IncorrectDiskStatus", "online needs In_use", "ResizeDisk")
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
            if category or performance_level or provisioned_iops is not None:
                self._modify_spec(disk_id, category, performance_level, provisioned_iops)
            if bursting_enabled is not None:  # ModifyDiskAttribute
                disk = self._require(disk_id, "ModifyDiskAttribute")
                if disk.category != "cloud_auto":
                    raise ecs_error("InvalidParameter", "BurstingEnabled", "ModifyDiskAttribute")
                self.disks[disk_id] = dataclasses.replace(disk, bursting_enabled=bursting_enabled)

    def _modify_spec(self, disk_id: str, category: str, level: str, iops: int | None) -> None:
        action = "ModifyDiskSpec"
        disk = self._settled(disk_id, action)
        if disk.multi_attach:
            raise ecs_error("InvalidOperation.MultiAttachDisk", "", action)
        new_category = category or disk.category
        if new_category not in SPEC_CATEGORIES or disk.category == "cloud":
            raise ecs_error("InvalidDiskCategory.NotSupported", new_category, action)
        if new_category == "cloud_essd":
            current = disk.performance_level if disk.category == "cloud_essd" else ""
            new_level = level or current or "PL1"
        elif level:
            raise ecs_error("InvalidPerformanceLevel.Malformed", "cloud_essd only", action)
        else:
            new_level = ""
        if iops is not None and new_category != "cloud_auto":
            raise ecs_error("InvalidParameter", "ProvisionedIops", action)
        new_iops = disk.provisioned_iops if iops is None else iops
        if (new_category, new_level, new_iops) == (
            disk.category,
            disk.performance_level,
            disk.provisioned_iops,
        ):
            return  # NoChangeInDiskCategoryAndPerformanceLevel, which EcsCloud treats as done
        if new_category == "cloud_essd":
            low, _ = size_range("cloud_essd", new_level)
            if disk.size_gib < low:
                raise ecs_error("OperationDenied.PerformanceLevelNotMatch", "", action)
        elif disk.size_gib < MIN_GIB.get(new_category, 1):
            raise ecs_error("InvalidDiskSize.NotSupported", "", action)
        if (disk.zone, new_category) in self.unsupported:
            raise ecs_error("InvalidDiskCategory.NotSupported", new_category, action)
        if disk_id in self._spec:
            raise ecs_error("DiskInCoolingPeriod", "", action)
        change = _SpecChange(
            self.latency,
            {
                "category": new_category,
                "performance_level": new_level,
                "provisioned_iops": new_iops,
            },
            self.cooling,
        )
        self._spec[disk_id] = change
        if not change.ticks:
            self._land_spec(disk_id)

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
            arguments = (disk_id, name, tuple(sorted((tags or {}).items())), retention_days)
            if client_token in self.snapshot_tokens:
                previous, snap_id = self.snapshot_tokens[client_token]
                if previous != arguments:
                    raise ecs_error("IdempotentParameterMismatch", "", "CreateSnapshot")
                return snap_id
            disk = self._require(disk_id, "CreateSnapshot")
            if disk.status == port.CREATING:
                raise ecs_error("IncorrectDiskStatus", "being created", "CreateSnapshot")
            taken = sum(1 for s in self.snapshots.values() if s.source_disk_id == disk_id)
            if taken >= DEFAULT_QUOTA_PER_DISK:
                raise ecs_error("QuotaExceed.Snapshot", "", "CreateSnapshot")
            snap_id = self._new_id("s-")
            ready = not self.snapshot_latency
            self.snapshots[snap_id] = Snapshot(
                id=snap_id,
                source_disk_id=disk_id,
                source_disk_size_gib=disk.size_gib,
                status=port.SNAPSHOT_ACCOMPLISHED if ready else port.SNAPSHOT_PROGRESSING,
                progress="100%" if ready else "0%",
                name=name,
                tags=dict(tags or {}),
            )
            if not ready:
                self._snapshot_ticks[snap_id] = self.snapshot_latency
            if client_token:
                self.snapshot_tokens[client_token] = (arguments, snap_id)
            return snap_id

    def delete_snapshot(self, snapshot_id: str, *, force: bool = False) -> None:
        with self._lock:
            self._enter("delete_snapshot", snapshot_id, force)
            if snapshot_id not in self.snapshots:
                raise ecs_error("InvalidSnapshotId.NotFound", "", "DeleteSnapshot")
            used = any(d.snapshot_id == snapshot_id for d in self.disks.values())
            if used and not force:
                raise ecs_error("SnapshotCreatedDisk", "", "DeleteSnapshot")
            del self.snapshots[snapshot_id]
            self._snapshot_ticks.pop(snapshot_id, None)

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
            for snap_id in list(self._snapshot_ticks):  # after answering: progressing was seen
                self._tick_snapshot(snap_id)
            return self._page(matches, page_token, max_results, "DescribeSnapshots")

    # --- internals -----------------------------------------------------------------------

    def asked(self, method: str) -> int:
        """Calls of ``method`` a handler made itself, not the waiter's polls."""
        return self.calls[method] - self.polls[method]

    def _enter(self, method: str, *args: object) -> None:
        self.calls[method] += 1
        if in_background():
            self.polls[method] += 1
        self.log.append((method, args))
        faults = self._faults.get(method)
        if faults:
            raise faults.pop(0)

    def _require(self, disk_id: str, action: str) -> Disk:
        disk = self.disks.get(disk_id)
        if disk is None:
            raise ecs_error("InvalidDiskId.NotFound", disk_id, action)
        return disk

    def _settled(self, disk_id: str, action: str) -> Disk:
        """The disk, when it is in a state ECS changes disks in and so are its instances."""
        disk = self._require(disk_id, action)
        if disk.status == port.CREATING:
            raise ecs_error("IncorrectDiskStatus.Initializing", "", action)
        if disk.status not in SETTLED:
            raise ecs_error("IncorrectDiskStatus", f"The disk is {disk.status}.", action)
        for instance_id in disk.attachments:
            inst = self.instances.get(instance_id)
            if inst is not None and inst.status not in LIVE_INSTANCE:
                raise ecs_error("IncorrectInstanceStatus", inst.status, action)
        return disk

    @staticmethod
    def _page(items: list[object], token: str, max_results: int, action: str) -> Page:
        try:
            start = int(token) if token else 0
        except ValueError:
            raise ecs_error("InvalidParameter", "NextToken", action) from None
        end = start + max_results
        return Page(items[start:end], str(end) if end < len(items) else "")

    def _tick(self, disk_id: str) -> None:
        self._tick_spec(disk_id)
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

    def _tick_spec(self, disk_id: str) -> None:
        change = self._spec.get(disk_id)
        if change is None or disk_id not in self.disks:
            return
        if change.ticks > 0:
            change.ticks -= 1
            if not change.ticks:
                self._land_spec(disk_id)
        elif change.cooling > 0:
            change.cooling -= 1
        else:
            del self._spec[disk_id]

    def _land_spec(self, disk_id: str) -> None:
        change = self._spec[disk_id]
        self.disks[disk_id] = dataclasses.replace(self.disks[disk_id], **change.changes)  # type: ignore[arg-type]
        if not change.cooling:
            del self._spec[disk_id]

    def _tick_snapshot(self, snap_id: str) -> None:
        left = self._snapshot_ticks[snap_id] - 1
        if left > 0:
            self._snapshot_ticks[snap_id] = left
            return
        del self._snapshot_ticks[snap_id]
        snap = self.snapshots.get(snap_id)
        if snap is not None and snap.status == port.SNAPSHOT_PROGRESSING:
            self.snapshots[snap_id] = dataclasses.replace(
                snap, status=port.SNAPSHOT_ACCOMPLISHED, progress="100%"
            )

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}fake{next(self._ids):016d}"


# --- the host port ---------------------------------------------------------------------------

HERE = "i-here"  # the instance FakeHost plays by default
DEVTMPFS = (0, 6)


class FakeHost:
    """Implements ``csi_disk.host.port.Host`` in memory: devices follow the fake cloud's
    attachments, mounts are a list (tests/unit/host/test_host_port.py holds it to the port)."""

    def __init__(self, cloud: InMemoryCloud | None, instance_id: str = HERE) -> None:
        self.cloud = cloud
        self.instance_id = instance_id
        self.plugged: dict[str, Path] = {}  # disks seen without a cloud (controller mode)
        self.rdevs: dict[str, int] = {}
        self.contents: dict[str, Probe] = {}
        self.mounts: list[Mount] = []
        self.formatted: list[tuple[str, str, tuple[str, ...]]] = []
        self.fscked: list[str] = []
        self.grown: list[str] = []
        self.grown_offline: list[bool] = []
        self.ext_sizes: dict[str, int] = {}  # ext filesystems smaller than their device
        self.mount_calls: list[tuple[str, str, str, tuple[str, ...]]] = []
        self.waits: list[float] = []  # timeouts given to wait_for_device
        self.grow_error: DriverError | None = None  # what growing a filesystem fails with
        self.rescanned: list[str] = []
        self.format_gate: threading.Event | None = None
        self.format_started = threading.Event()
        self._next = 0

    # --- set-up -------------------------------------------------------------------------

    def device_path(self, disk_id: str) -> Path:
        if disk_id not in self.rdevs:
            self._next += 1
            self.rdevs[disk_id] = os.makedev(253, self._next)
        return Path(f"/dev/vd-{disk_id}")

    def plug(self, disk_id: str) -> Path:
        self.plugged[disk_id] = self.device_path(disk_id)
        return self.plugged[disk_id]

    # --- Host ---------------------------------------------------------------------------

    def find_device(self, disk_id: str) -> Path | None:
        if disk_id in self.plugged:
            return self.plugged[disk_id]
        disk = self.cloud.disks.get(disk_id) if self.cloud is not None else None
        if disk is not None and disk.attached_to(self.instance_id):
            return self.device_path(disk_id)
        return None

    def wait_for_device(self, disk_id: str, timeout: float) -> Path:
        self.waits.append(timeout)
        found = self.find_device(disk_id)
        if found is None:
            raise DeadlineExceeded(f"disk {disk_id} did not appear")
        return found

    def serial_of(self, device: Path) -> str | None:
        return device.name.removeprefix("vd-d-")

    def device_number(self, path: Path) -> int | None:
        for disk_id, rdev in self.rdevs.items():
            if Path(path) == Path(f"/dev/vd-{disk_id}"):
                return rdev
        entry = self.find_mount(path)
        if entry is not None and entry.fstype == "devtmpfs":
            return self.rdevs[entry.root.removeprefix("/vd-")]
        return None

    def probe(self, device: Path) -> Probe:
        return self.contents.get(str(device), Probe())

    def format(self, device: Path, fstype: str, options: Sequence[str]) -> None:
        self.format_started.set()
        if self.format_gate is not None:
            self.format_gate.wait(5)
        assert self.probe(device).is_blank, "formatted a device that holds data"
        self.formatted.append((str(device), fstype, tuple(options)))
        self.contents[str(device)] = Probe(type=fstype, usage="filesystem")

    def fsck(self, device: Path, fstype: str) -> None:
        self.fscked.append(str(device))

    def grow(self, device: Path, mount_path: Path | None, fstype: str) -> None:
        if self.grow_error is not None:
            raise self.grow_error
        self.grown.append(str(device))
        self.grown_offline.append(mount_path is None)
        self.ext_sizes.pop(str(device), None)  # it now fills the device

    def ext_size(self, device: Path) -> int:
        return self.ext_sizes.get(str(device), self.device_size(device))

    def mount(self, device: Path, target: Path, fstype: str, options: Sequence[str]) -> None:
        self.mount_calls.append((str(device), str(target), fstype, tuple(options)))
        rdev = self.device_number(device)
        assert rdev is not None
        ro = "ro" if "ro" in options else "rw"
        self._add(os.major(rdev), os.minor(rdev), "/", target, ro, fstype, str(device))

    def bind_mount(
        self, source: Path, target: Path, read_only: bool, options: Sequence[str]
    ) -> None:
        ro = "ro" if read_only else "rw"
        src = self.find_mount(source)
        if src is not None:
            self._add(src.major, src.minor, src.root, target, ro, src.fstype, src.source)
        else:
            self._add(*DEVTMPFS, f"/{source.name}", target, ro, "devtmpfs", "udev")

    def _add(
        self, major: int, minor: int, root: str, target: Path, ro: str, fs: str, src: str
    ) -> None:
        entry = Mount(
            len(self.mounts) + 100, 1, major, minor, root, str(target), (ro,), fs, src, ()
        )
        self.mounts.append(entry)

    def unmount(self, target: Path) -> None:
        for entry in reversed(self.mounts):
            if entry.mount_point == str(target):
                self.mounts.remove(entry)
                return

    def find_mount(self, path: Path) -> Mount | None:
        found = [m for m in self.mounts if m.mount_point == str(path)]
        return found[-1] if found else None

    def mounts_of_device(self, device: Path) -> list[Mount]:
        rdev = self.device_number(device)
        if rdev is None:
            return []
        return [
            m
            for m in self.mounts
            if (m.major, m.minor) == (os.major(rdev), os.minor(rdev))
            or (m.fstype == "devtmpfs" and m.root == f"/{device.name}")
        ]

    def stats(self, path: Path, timeout: float) -> VolumeStats:
        return VolumeStats(20 << 30, 15 << 30, 5 << 30, 1000, 900, 100)

    def device_size(self, device: Path) -> int:
        return 20 << 30

    def rescan(self, device: Path) -> None:
        self.rescanned.append(str(device))
