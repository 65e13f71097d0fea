"""What the driver needs from ECS, as plain data and one Protocol.

Handlers depend on this module only; ``cloud.ecs`` implements it with the Alibaba SDK and
tests implement it in memory. Values follow ECS's own vocabulary (status names, categories)
so a reader can check them against the ECS API reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")

# ECS disk statuses (DescribeDisks "Status").
CREATING = "Creating"
AVAILABLE = "Available"
IN_USE = "In_use"
ATTACHING = "Attaching"
DETACHING = "Detaching"
REINITING = "ReIniting"

# ECS instance statuses (DescribeInstances "Status").
RUNNING = "Running"
STOPPED = "Stopped"
STARTING = "Starting"
STOPPING = "Stopping"

# ECS snapshot statuses (DescribeSnapshots "Status").
SNAPSHOT_PROGRESSING = "progressing"
SNAPSHOT_ACCOMPLISHED = "accomplished"
SNAPSHOT_FAILED = "failed"


@dataclass(frozen=True)
class Disk:
    """One cloud disk as DescribeDisks reports it."""

    id: str
    zone: str
    category: str
    size_gib: int
    status: str
    region: str = ""
    performance_level: str = ""
    serial: str = ""
    attachments: tuple[str, ...] = ()  # instance ids the disk is attached to
    tags: Mapping[str, str] = field(default_factory=dict)
    multi_attach: bool = False
    encrypted: bool = False
    kms_key_id: str = ""
    snapshot_id: str = ""  # the snapshot it was created from, if any
    resource_group_id: str = ""
    name: str = ""
    description: str = ""
    device: str = ""
    delete_with_instance: bool = False
    provisioned_iops: int = 0
    bursting_enabled: bool = False
    creation_time: str = ""

    def attached_to(self, instance_id: str) -> bool:
        return instance_id in self.attachments


@dataclass(frozen=True)
class DiskRequest:
    """The arguments of one CreateDisk call."""

    zone: str
    category: str
    size_gib: int
    client_token: str
    name: str = ""
    description: str = ""
    performance_level: str = ""
    encrypted: bool = False
    kms_key_id: str = ""
    resource_group_id: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    multi_attach: bool = False
    snapshot_id: str = ""
    provisioned_iops: int | None = None
    bursting_enabled: bool | None = None


@dataclass(frozen=True)
class Instance:
    """One ECS instance as DescribeInstances reports it."""

    id: str
    zone: str
    status: str
    instance_type: str = ""
    region: str = ""


# DescribeAvailableResource's StatusCategory: stock left (plenty, or low) or none.
WITH_STOCK = "WithStock"
CLOSED_WITH_STOCK = "ClosedWithStock"
WITHOUT_STOCK = "WithoutStock"
CLOSED_WITHOUT_STOCK = "ClosedWithoutStock"


@dataclass(frozen=True)
class DiskOffer:
    """A disk category a zone (or the region, ``zone`` empty) sells, as DescribeAvailableResource
    reports it: its stock and the sizes it sells."""

    zone: str
    category: str
    status: str = "Available"  # or SoldOut
    status_category: str = ""  # WITH_STOCK, ...; empty when ECS does not say
    min_gib: int = 0
    max_gib: int = 0

    @property
    def in_stock(self) -> bool:
        """Whether CreateDisk can still sell it: low supply (closed) still sells."""
        if self.status_category:
            return self.status_category in (WITH_STOCK, CLOSED_WITH_STOCK)
        return self.status == "Available"


@dataclass(frozen=True)
class Snapshot:
    """One snapshot as DescribeSnapshots reports it."""

    id: str
    source_disk_id: str
    source_disk_size_gib: int
    status: str
    progress: str = ""
    name: str = ""
    creation_time: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.status == SNAPSHOT_ACCOMPLISHED


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; ``next_token`` is empty on the last page."""

    items: list[T]
    next_token: str = ""


class Cloud(Protocol):
    """The ECS operations the driver uses.

    Methods raise ``csi_disk.cloud.errors.EcsError`` subclasses (which are
    ``csi_disk.errors.DriverError`` subclasses) for failures ECS reports.
    """

    region: str

    def create_disk(self, request: DiskRequest) -> str:
        """Create a disk and return its id; ECS dedupes on ``client_token``."""
        ...

    def delete_disk(self, disk_id: str) -> None: ...

    def describe_disks(self, disk_ids: Sequence[str]) -> list[Disk]:
        """The disks among ``disk_ids`` that exist; unknown ids are simply absent."""
        ...

    def find_disks(
        self,
        *,
        tags: Mapping[str, str] | None = None,
        zone: str = "",
        instance_id: str = "",
        page_token: str = "",
        max_results: int = 100,
    ) -> Page[Disk]: ...

    def attach_disk(self, disk_id: str, instance_id: str) -> None:
        """Start an attach (``DeleteWithInstance=false``); completion is observed by polling."""
        ...

    def detach_disk(self, disk_id: str, instance_id: str) -> None: ...

    def describe_instance(self, instance_id: str) -> Instance | None: ...

    def instance_disk_quantity(self, instance_type: str) -> int | None:
        """How many disks an instance type can hold, or None when ECS does not say."""
        ...

    def available_disks(
        self, *, zone: str = "", instance_type: str = "", regional: bool = False
    ) -> list[DiskOffer]:
        """The data disk categories sold on their own (DescribeAvailableResource,
        ResourceType=disk) in ``zone`` (every zone when empty), narrowed to those
        ``instance_type`` attaches when given; ``regional``: the region's zone-redundant
        categories instead (Scope=region), each with ``zone`` empty."""
        ...

    def resize_disk(self, disk_id: str, size_gib: int, *, online: bool) -> None: ...

    def modify_disk_spec(
        self,
        disk_id: str,
        *,
        category: str = "",
        performance_level: str = "",
        provisioned_iops: int | None = None,
        bursting_enabled: bool | None = None,
    ) -> None: ...

    def create_snapshot(
        self,
        disk_id: str,
        *,
        name: str,
        client_token: str,
        tags: Mapping[str, str] | None = None,
        retention_days: int | None = None,
    ) -> str: ...

    def delete_snapshot(self, snapshot_id: str, *, force: bool = False) -> None: ...

    def describe_snapshots(
        self,
        *,
        snapshot_ids: Sequence[str] = (),
        disk_id: str = "",
        tags: Mapping[str, str] | None = None,
        page_token: str = "",
        max_results: int = 100,
    ) -> Page[Snapshot]: ...
