"""Topology keys and zone choice for CreateVolume and NodeGetInfo.

The keys are those of Alibaba's upstream Go driver, so volumes created by either
driver schedule alike: NodeGetInfo reports them (region and instance id when known),
CreateVolume accepts any zone key
in requirements (including the legacy beta label) and answers with the driver's own key.

Beside the zone, a node reports the disk categories its instance type attaches, one segment
``node.csi.alibabacloud.com/disktype.<category>: available`` each: the node labels upstream's
driver sets, so clusters migrating from it keep their labels and PVs. As topology rather than
labels the node plugin writes itself, kubelet sets them from NodeGetInfo (the node plugin needs
no API access), csi-provisioner hands the selected node's types to CreateVolume in the
requirement, and capacity tracking gets one segment per set of types, so the scheduler only
places a pod where its disk can be attached.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from csi_disk import DRIVER_NAME
from csi_disk.errors import InvalidArgument
from csi_disk.quoting import quote

ZONE_KEY = f"topology.{DRIVER_NAME}/zone"
K8S_ZONE_KEY = "topology.kubernetes.io/zone"
K8S_REGION_KEY = "topology.kubernetes.io/region"
INSTANCE_ID_KEY = "alibabacloud.com/ecs-instance-id"
LEGACY_ZONE_KEY = "failure-domain.beta.kubernetes.io/zone"
DISK_TYPE_PREFIX = "node.csi.alibabacloud.com/disktype."
DISK_TYPE_AVAILABLE = "available"

# Where a zone may appear in a requirement segment, most specific first.
ZONE_KEYS = (ZONE_KEY, K8S_ZONE_KEY, LEGACY_ZONE_KEY)

# ECS zone ids: region id plus a zone letter (cn-hangzhou-h, ap-southeast-1a, us-east-1a).
_ZONE_ID = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+){1,5}")
# ECS category names; a label key's name part holds at most 63 characters.
_CATEGORY_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


class Topology(Protocol):
    """What a csi.v1.Topology looks like to this module."""

    @property
    def segments(self) -> Mapping[str, str]: ...


class TopologyRequirement(Protocol):
    """What a csi.v1.TopologyRequirement looks like to this module."""

    @property
    def requisite(self) -> Sequence[Topology]: ...

    @property
    def preferred(self) -> Sequence[Topology]: ...


def zone_of(segments: Mapping[str, str]) -> str:
    """The zone a segment names under any known key, or "" when it names none."""
    for key in ZONE_KEYS:
        value = segments.get(key, "")
        if value:
            return value
    return ""


def parse_zone_list(value: str) -> list[str]:
    """A comma-separated zone list, trimmed, without empties or repeats; each zone checked."""
    zones = _unique(part.strip() for part in value.split(",") if part.strip())
    for zone in zones:
        check_zone(zone, "parameter zoneId")
    return zones


def check_zone(zone: str, source: str) -> str:
    """``zone`` when it is shaped like an ECS zone id, else INVALID_ARGUMENT naming ``source``."""
    if _ZONE_ID.fullmatch(zone) is None:
        raise InvalidArgument(f"{source}: {quote(zone)} is not an ECS zone id (like cn-hangzhou-h)")
    return zone


def zones_in_order(
    requirement: TopologyRequirement | None, zone_param: str, default_zone: str
) -> list[str]:
    """Every zone the volume may be created in, best first.

    Preferred segments come first, then requisite ones; the ``zoneId`` parameter narrows
    them. With no topology requirement at all, the ``zoneId`` list, else the controller's
    own zone. A zone outside a non-empty requisite is never returned: a requisite naming no
    zone under any known key is INVALID_ARGUMENT rather than a disk somewhere else.
    """
    params = parse_zone_list(zone_param)
    preferred: list[str] = []
    requisite: list[str] = []
    if requirement is not None:
        preferred = _zones_of(requirement.preferred, "preferred")
        requisite = _zones_of(requirement.requisite, "requisite")
        if len(requirement.requisite) and not requisite:
            raise InvalidArgument(
                "the topology requirement's requisite names no zone under any of "
                f"{', '.join(ZONE_KEYS)}: refusing to create the volume outside it"
            )
    topology = _unique([*preferred, *requisite])
    if requisite:
        allowed = set(requisite)
        topology = [z for z in topology if z in allowed]
    if not topology:
        if params:
            return params
        if default_zone:
            return [default_zone]
        raise InvalidArgument(
            "no zone to create the volume in: the request has no topology, the "
            "StorageClass no zoneId, and the controller does not know its own zone"
        )
    if not params:
        return topology
    chosen = [z for z in topology if z in set(params)]
    if not chosen:
        raise InvalidArgument(
            f"zoneId {quote(','.join(params))} shares no zone with the topology requirement "
            f"({quote(','.join(topology))})"
        )
    return chosen


def _zones_of(segments: Sequence[Topology], which: str) -> list[str]:
    zones = _unique(z for z in (zone_of(t.segments) for t in segments) if z)
    for zone in zones:
        check_zone(zone, f"topology {which} zone")
    return zones


def is_category_name(name: str) -> bool:
    """Whether ``name`` can be a disk category in a topology key."""
    return _CATEGORY_NAME.fullmatch(name) is not None


def parse_disk_categories(value: str) -> tuple[str, ...] | None:
    """``--disk-categories``: None to ask ECS (empty), () for ``none``, else the list.

    ValueError names the first entry that cannot be a category.
    """
    text = value.strip()
    if not text:
        return None
    if text == "none":
        return ()
    names = [part.strip() for part in text.split(",") if part.strip()]
    for name in names:
        if not is_category_name(name):
            raise ValueError(f"disk-categories: {name[:40]!a} is not a disk category name")
    return tuple(dict.fromkeys(names))


def disk_type_key(category: str) -> str:
    return DISK_TYPE_PREFIX + category


def disk_types_of(segments: Mapping[str, str]) -> frozenset[str] | None:
    """The categories a segment says its node attaches; None when it says nothing of disk
    types (a node that does not report them), which restricts nothing. As upstream's driver
    reads its labels, the key names the category whatever its value."""
    found = {k.removeprefix(DISK_TYPE_PREFIX) for k in segments if k.startswith(DISK_TYPE_PREFIX)}
    return frozenset(found) if found else None


def node_segments(
    zone: str, region: str, instance_id: str, disk_types: Iterable[str] = ()
) -> dict[str, str]:
    """NodeGetInfo's accessible topology: every key the upstream driver reports, and the
    disk categories the node attaches as upstream's node labels."""
    segments = {ZONE_KEY: zone, K8S_ZONE_KEY: zone}
    if region:
        segments[K8S_REGION_KEY] = region
    if instance_id:
        segments[INSTANCE_ID_KEY] = instance_id
    for category in disk_types:
        segments[disk_type_key(category)] = DISK_TYPE_AVAILABLE
    return segments


def volume_segment(
    zone: str, *, region: str = "", category: str = "", attached_by_type: bool = False
) -> dict[str, str]:
    """CreateVolume's accessible topology for a disk: its zone, or for a regional disk (no
    zone) its region as upstream's driver answers it; ``attached_by_type`` adds the node
    label of its category, so the PV only matches nodes that can attach it."""
    segments = {ZONE_KEY: zone} if zone else {K8S_REGION_KEY: region}
    if attached_by_type and category:
        segments[disk_type_key(category)] = DISK_TYPE_AVAILABLE
    return segments


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
