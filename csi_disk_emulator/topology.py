"""The emulated region: zones, instance types and instances, and what each supports.

Zones and instance families differ in the disk categories they take, the way real ECS
zones do, so a driver's category fallback and zone choice meet realistic refusals.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Categories a zone sells (a disk lives in one zone) and those the region sells (a regional
# ESSD keeps its data in several zones and attaches from any zone of the region).
ZONAL_CATEGORIES = (
    "cloud",
    "cloud_efficiency",
    "cloud_ssd",
    "cloud_essd",
    "cloud_essd_entry",
    "cloud_auto",
)
REGIONAL_CATEGORIES = ("cloud_regional_disk_auto",)
ALL_CATEGORIES = ZONAL_CATEGORIES + REGIONAL_CATEGORIES


def is_regional(category: str) -> bool:
    return category in REGIONAL_CATEGORIES


@dataclass(frozen=True)
class InstanceType:
    """An ECS instance type: how many data disks it takes, which bus it shows them on, and
    the disk categories its family can attach (AttachDisk refuses the others)."""

    name: str
    family: str
    disk_quantity: int
    bus: str  # "virtio" or "nvme"
    categories: tuple[str, ...]
    cpu: int = 2
    memory_gib: float = 8.0


# What each family attaches. ECS's reference confirms that ESSD Entry attaches only to the u1
# and e families (RunInstances, DataDisk.N.Category) and that ESSD, ESSD AutoPL and regional
# ESSD go with the NVMe families (g8i, c8y, ...; "Enable multi-attach"). The rest follows the
# families' generations: older virtio families keep ultra disks and standard SSDs, the NVMe
# ones take ESSD-class disks only. The driver learns the truth from DescribeAvailableResource,
# as it does on ECS, so the table only has to be self-consistent.
INSTANCE_TYPES: dict[str, InstanceType] = {
    t.name: t
    for t in (
        InstanceType(
            "ecs.g7.large",
            "ecs.g7",
            16,
            "virtio",
            ("cloud_efficiency", "cloud_ssd", "cloud_essd", "cloud_auto"),
        ),
        InstanceType(
            "ecs.g6.large",
            "ecs.g6",
            16,
            "virtio",
            ("cloud", "cloud_efficiency", "cloud_ssd", "cloud_essd"),
        ),
        InstanceType(
            "ecs.g8i.large",
            "ecs.g8i",
            16,
            "nvme",
            ("cloud_essd", "cloud_auto", "cloud_regional_disk_auto"),
        ),
        InstanceType(
            "ecs.c8y.large",
            "ecs.c8y",
            16,
            "nvme",
            ("cloud_essd", "cloud_auto", "cloud_regional_disk_auto"),
            memory_gib=4.0,
        ),
        InstanceType(
            "ecs.t6-c1m2.large",
            "ecs.t6",
            8,
            "virtio",
            ("cloud_efficiency", "cloud_ssd", "cloud_essd", "cloud_auto"),
            memory_gib=4.0,
        ),
        InstanceType(
            "ecs.u1-c1m2.large",
            "ecs.u1",
            16,
            "virtio",
            ("cloud_efficiency", "cloud_ssd", "cloud_essd", "cloud_essd_entry", "cloud_auto"),
            memory_gib=4.0,
        ),
        InstanceType(
            "ecs.e-c1m2.large",
            "ecs.e",
            8,
            "virtio",
            ("cloud_efficiency", "cloud_essd", "cloud_essd_entry", "cloud_auto"),
            memory_gib=4.0,
        ),
    )
}


@dataclass
class ZoneSpec:
    """A zone and the data disk categories sold in it."""

    id: str
    categories: tuple[str, ...]


@dataclass
class InstanceSpec:
    """An instance the emulator starts with; attach/detach concurrency is per instance."""

    id: str
    zone: str
    instance_type: str
    ram_role: str = "csi-disk-node"
    max_attaching: int = 1
    max_detaching: int = 1
    status: str = "Running"
    metadata_token_required: bool = False


@dataclass
class Topology:
    """Everything fixed at first start: later starts read it back from the state."""

    region: str
    zones: list[ZoneSpec]
    instances: list[InstanceSpec] = field(default_factory=list)
    regional_categories: tuple[str, ...] = REGIONAL_CATEGORIES  # what the region sells

    def zone(self, zone_id: str) -> ZoneSpec | None:
        return next((z for z in self.zones if z.id == zone_id), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "zones": [{"id": z.id, "categories": list(z.categories)} for z in self.zones],
            "regional_categories": list(self.regional_categories),
            "instances": [vars(i).copy() for i in self.instances],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], rng: random.Random | None = None) -> Topology:
        """Parse a topology file; instances without an id get a generated one."""
        rng = rng or random.Random(0)
        zones = [
            ZoneSpec(z["id"], _categories(z.get("categories", ZONAL_CATEGORIES), ZONAL_CATEGORIES))
            if isinstance(z, dict)
            else ZoneSpec(str(z), ZONAL_CATEGORIES)
            for z in data["zones"]
        ]
        instances = []
        for raw in data.get("instances", []):
            spec = dict(raw)
            spec.setdefault("id", new_id("i-", rng))
            if spec["instance_type"] not in INSTANCE_TYPES:
                raise ValueError(f"unknown instance type {spec['instance_type']!r}")
            instances.append(InstanceSpec(**spec))
        regional = _categories(
            data.get("regional_categories", REGIONAL_CATEGORIES), REGIONAL_CATEGORIES
        )
        return cls(data["region"], zones, instances, regional)


def _categories(names: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A topology file's category list, each one of ``allowed``."""
    found = tuple(str(n) for n in names)
    unknown = [n for n in found if n not in allowed]
    if unknown:
        raise ValueError(f"unknown categories {unknown} (known: {', '.join(allowed)})")
    return found


def new_id(prefix: str, rng: random.Random) -> str:
    """An ECS-looking resource id: prefix plus 20 lowercase alphanumerics."""
    alphabet = string.ascii_lowercase + string.digits
    return prefix + "".join(rng.choice(alphabet) for _ in range(20))


def default_topology(
    region: str = "cn-hangzhou",
    zones: list[str] | None = None,
    instances_per_zone: int = 2,
    rng: random.Random | None = None,
) -> Topology:
    """Three zones by default; the last zone's instances are an NVMe family that takes
    only ESSD-class disks, and that zone sells no cloud_ssd, so fallbacks get exercised."""
    rng = rng or random.Random(0)
    zone_ids = zones or [f"{region}-h", f"{region}-i", f"{region}-j"]
    specs = []
    instances = []
    for index, zone_id in enumerate(zone_ids):
        nvme_zone = len(zone_ids) > 1 and index == len(zone_ids) - 1
        if nvme_zone:
            categories = ("cloud_efficiency", "cloud_essd", "cloud_essd_entry", "cloud_auto")
            instance_type = "ecs.g8i.large"
        else:
            categories = ZONAL_CATEGORIES
            instance_type = "ecs.g7.large"
        specs.append(ZoneSpec(zone_id, categories))
        for _ in range(instances_per_zone):
            instances.append(InstanceSpec(new_id("i-", rng), zone_id, instance_type))
    return Topology(region, specs, instances)


def load_topology(path: Path) -> Topology:
    """Read a topology JSON file (see docs/emulator.md for its shape)."""
    return Topology.from_json(json.loads(path.read_text(encoding="utf-8")))
