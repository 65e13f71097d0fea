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

ALL_CATEGORIES = (
    "cloud",
    "cloud_efficiency",
    "cloud_ssd",
    "cloud_essd",
    "cloud_essd_entry",
    "cloud_auto",
)


@dataclass(frozen=True)
class InstanceType:
    """An ECS instance type: how many data disks it takes and which bus it shows them on."""

    name: str
    family: str
    disk_quantity: int
    bus: str  # "virtio" or "nvme"
    categories: tuple[str, ...]
    cpu: int = 2
    memory_gib: float = 8.0


INSTANCE_TYPES: dict[str, InstanceType] = {
    t.name: t
    for t in (
        InstanceType(
            "ecs.g7.large",
            "ecs.g7",
            16,
            "virtio",
            ("cloud_efficiency", "cloud_ssd", "cloud_essd", "cloud_essd_entry", "cloud_auto"),
        ),
        InstanceType(
            "ecs.g6.large",
            "ecs.g6",
            16,
            "virtio",
            ("cloud", "cloud_efficiency", "cloud_ssd", "cloud_essd", "cloud_auto"),
        ),
        InstanceType(
            "ecs.g8i.large",
            "ecs.g8i",
            16,
            "nvme",
            ("cloud_essd", "cloud_essd_entry", "cloud_auto"),
        ),
        InstanceType(
            "ecs.t6-c1m2.large",
            "ecs.t6",
            8,
            "virtio",
            ("cloud_efficiency", "cloud_ssd", "cloud_essd", "cloud_essd_entry", "cloud_auto"),
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

    def zone(self, zone_id: str) -> ZoneSpec | None:
        return next((z for z in self.zones if z.id == zone_id), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "zones": [{"id": z.id, "categories": list(z.categories)} for z in self.zones],
            "instances": [vars(i).copy() for i in self.instances],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], rng: random.Random | None = None) -> Topology:
        """Parse a topology file; instances without an id get a generated one."""
        rng = rng or random.Random(0)
        zones = [
            ZoneSpec(z["id"], tuple(z.get("categories", ALL_CATEGORIES)))
            if isinstance(z, dict)
            else ZoneSpec(str(z), ALL_CATEGORIES)
            for z in data["zones"]
        ]
        instances = []
        for raw in data.get("instances", []):
            spec = dict(raw)
            spec.setdefault("id", new_id("i-", rng))
            if spec["instance_type"] not in INSTANCE_TYPES:
                raise ValueError(f"unknown instance type {spec['instance_type']!r}")
            instances.append(InstanceSpec(**spec))
        return cls(data["region"], zones, instances)


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
            categories = ALL_CATEGORIES
            instance_type = "ecs.g7.large"
        specs.append(ZoneSpec(zone_id, categories))
        for _ in range(instances_per_zone):
            instances.append(InstanceSpec(new_id("i-", rng), zone_id, instance_type))
    return Topology(region, specs, instances)


def load_topology(path: Path) -> Topology:
    """Read a topology JSON file (see docs/emulator.md for its shape)."""
    return Topology.from_json(json.loads(path.read_text(encoding="utf-8")))
