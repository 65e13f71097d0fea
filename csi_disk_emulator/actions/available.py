"""DescribeAvailableResource: which disk categories each zone (or the region) sells, with the
stock of each, for data disks and system disks.

As ECS documents it (DestinationResource chain Zone > IoOptimized > InstanceType = Network =
ddh > SystemDisk > DataDisk):

- ``DataDisk`` with ``ResourceType=disk``: the data disk categories sold on their own;
  ``InstanceType`` is optional and narrows them to what that type can attach. With
  ``ResourceType=instance`` (the default): disks bought with an instance, so ``InstanceType``
  and ``DataDiskCategory`` are required.
- ``SystemDisk``: system disks are bound to instance types, so ``InstanceType`` is required.
- Without ``ZoneId``, every zone of the region. With ``Scope=region``, one entry for the
  region (``ZoneId`` empty) listing the regional categories: how Alibaba's CSI driver learns
  whether a node can attach a regional ESSD.

Each category answers ``Status`` and ``StatusCategory`` from the stock (``csi_disk_emulator
.stock``) and the sizes it sells as ``Min``/``Max`` in GiB. A zone with nothing to offer is
left out. The other DestinationResource values are not emulated.
"""

from __future__ import annotations

from typing import Any

from csi_disk_emulator import stock
from csi_disk_emulator.actions import Params, action
from csi_disk_emulator.actions.disks import PERFORMANCE_LEVELS, size_range
from csi_disk_emulator.cloud import Cloud
from csi_disk_emulator.errors import EcsError, invalid_parameter, missing_parameter
from csi_disk_emulator.topology import INSTANCE_TYPES

DESTINATIONS = ("Zone", "IoOptimized", "InstanceType", "SystemDisk", "DataDisk", "Network", "ddh")
EMULATED = ("SystemDisk", "DataDisk")
RESOURCE_TYPES = ("instance", "disk", "reservedinstance", "ddh")
# Categories an instance can boot from, and the sizes ECS sells as system disks.
SYSTEM_DISK_CATEGORIES = ("cloud", "cloud_efficiency", "cloud_ssd", "cloud_essd", "cloud_auto",
                          "cloud_essd_entry")  # fmt: skip
SYSTEM_DISK_GIB = (20, 2048)


@action(
    "DescribeAvailableResource",
    params=(
        "DestinationResource",
        "ZoneId",
        "DataDiskCategory",
        "InstanceType",
        "IoOptimized",
        "InstanceChargeType",
        "SpotStrategy",
        "SpotDuration",
        "ResourceType",
        "Scope",
        "NetworkCategory",
        "SystemDiskCategory",
        "DedicatedHostId",
        "Cores",
        "Memory",
    ),
)
def describe_available_resource(cloud: Cloud, p: Params) -> dict[str, Any]:
    destination = p.required("DestinationResource")
    if destination not in DESTINATIONS:
        raise invalid_parameter("DestinationResource")
    if destination not in EMULATED:
        raise invalid_parameter("DestinationResource", f"{destination} is not emulated.")
    resource_type = p.str("ResourceType", "instance")
    if resource_type not in RESOURCE_TYPES:
        raise invalid_parameter("ResourceType")
    if p.str("IoOptimized", "optimized") not in ("optimized", "none"):
        raise invalid_parameter("IoOptimized")
    instance_type = p.str("InstanceType")
    with_instance = destination == "SystemDisk" or resource_type == "instance"
    if with_instance and not instance_type:
        raise missing_parameter("InstanceType")
    if destination == "DataDisk" and resource_type == "instance" and not p.str("DataDiskCategory"):
        raise missing_parameter("DataDiskCategory")
    if instance_type and instance_type not in INSTANCE_TYPES:
        raise EcsError("InvalidInstanceType.ValueNotSupported")
    zone_filter = p.str("ZoneId")
    if zone_filter and cloud.topology.zone(zone_filter) is None:
        raise EcsError("InvalidZoneId.NotFound")
    wanted = p.str("SystemDiskCategory" if destination == "SystemDisk" else "DataDiskCategory")
    attachable = INSTANCE_TYPES[instance_type].categories if instance_type else None

    def offered(category: str) -> bool:
        if wanted and category != wanted:
            return False
        if destination == "SystemDisk" and category not in SYSTEM_DISK_CATEGORIES:
            return False
        return attachable is None or category in attachable

    region = cloud.topology.region
    if p.str("Scope").lower() == "region":
        places = [("", region, cloud.topology.regional_categories)]
    else:
        places = [
            (z.id, z.id, z.categories)
            for z in cloud.topology.zones
            if not zone_filter or z.id == zone_filter
        ]
    with cloud.store.tx() as db:
        levels = stock.read_all(db)
    found = []
    for zone_id, place, sold in places:
        supported = [
            _supported(destination, category, levels.get((place, category), stock.Stock()))
            for category in sold
            if offered(category)
        ]
        if supported:
            found.append(_zone(region, zone_id, destination, supported))
    return {"AvailableZones": {"AvailableZone": found}}


def _supported(destination: str, category: str, level: stock.Stock) -> dict[str, Any]:
    if destination == "SystemDisk":
        low, high = SYSTEM_DISK_GIB
    else:
        levels = PERFORMANCE_LEVELS if category == "cloud_essd" else ("",)
        low = min(size_range(category, lvl or "PL1")[0] for lvl in levels)
        high = size_range(category, "PL1")[1]
    return {
        "Value": category,
        "Status": level.status,
        "StatusCategory": level.status_category,
        "Min": low,
        "Max": high,
        "Unit": "GiB",
    }


def _zone(
    region: str, zone_id: str, destination: str, supported: list[dict[str, Any]]
) -> dict[str, Any]:
    """One AvailableZone: available while any category has stock; its StatusCategory the
    best of its categories'."""
    best = min(stock.STATUS_CATEGORIES.index(s["StatusCategory"]) for s in supported)
    return {
        "RegionId": region,
        "ZoneId": zone_id,
        "Status": "Available" if best < 2 else "SoldOut",
        "StatusCategory": stock.STATUS_CATEGORIES[best],
        "AvailableResources": {
            "AvailableResource": [
                {"Type": destination, "SupportedResources": {"SupportedResource": supported}}
            ]
        },
    }
