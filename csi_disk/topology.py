"""Topology keys and zone choice for CreateVolume and NodeGetInfo.

The keys are those of Alibaba's upstream Go driver, so volumes created by either
driver schedule alike: NodeGetInfo reports them (region and instance id when known),
CreateVolume accepts any zone key
in requirements (including the legacy beta label) and answers with the driver's own key.
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

# Where a zone may appear in a requirement segment, most specific first.
ZONE_KEYS = (ZONE_KEY, K8S_ZONE_KEY, LEGACY_ZONE_KEY)

# ECS zone ids: region id plus a zone letter (cn-hangzhou-h, ap-southeast-1a, us-east-1a).
_ZONE_ID = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+){1,5}")


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


def node_segments(zone: str, region: str, instance_id: str) -> dict[str, str]:
    """NodeGetInfo's accessible topology: every key the upstream driver reports."""
    segments = {ZONE_KEY: zone, K8S_ZONE_KEY: zone}
    if region:
        segments[K8S_REGION_KEY] = region
    if instance_id:
        segments[INSTANCE_ID_KEY] = instance_id
    return segments


def volume_segment(zone: str) -> dict[str, str]:
    """CreateVolume's accessible topology for a disk in ``zone``."""
    return {ZONE_KEY: zone}


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
