"""CSI ControllerModifyVolume: change a disk's category or performance through ECS.

VolumeAttributesClass parameters; the same keys given to CreateVolume as
mutable_parameters shape the disk it creates (``with_mutable``). Requests are
checked against ECS's size rules before any call, so an impossible change is
INVALID_ARGUMENT (the resizer marks it infeasible and stops) rather than an ECS refusal.
A request that changes nothing answers OK without calling ECS. ECS refuses a change during
the cooling period after the previous one; that surfaces as ABORTED: the volume has an
operation settling, which is what ABORTED means in CSI, and the resizer retries it with
backoff (UNAVAILABLE would blame the plugin or the cloud being unreachable).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from csi_disk import categories
from csi_disk.categories import PERFORMANCE_LEVELS
from csi_disk.cloud.port import Disk
from csi_disk.csi_pb import csi_pb2
from csi_disk.deadlines import Deadline
from csi_disk.disks import Disks
from csi_disk.errors import InvalidArgument, NotFound
from csi_disk.parameters import MAX_PROVISIONED_IOPS, VolumeParameters, parse_count
from csi_disk.quoting import quote
from csi_disk.volume_ids import check_id, validate_volume_id

log = logging.getLogger(__name__)

RPC = csi_pb2.ControllerServiceCapability.RPC

MUTABLE_KEYS = ("performanceLevel", "type", "provisionedIops", "burstingEnabled")


@dataclass(frozen=True)
class Change:
    """The spec a VolumeAttributesClass asks for; None keeps the disk's value."""

    category: str | None = None
    performance_level: str | None = None
    provisioned_iops: int | None = None
    bursting_enabled: bool | None = None


def parse_mutable(params: Mapping[str, str]) -> Change:
    """mutable_parameters -> Change; an unknown key or bad value is INVALID_ARGUMENT."""
    for key in sorted(params):
        if key not in MUTABLE_KEYS:
            raise InvalidArgument(
                f"unknown mutable parameter {quote(key)} (known: {', '.join(MUTABLE_KEYS)})"
            )
    category = params.get("type")
    if category is not None:
        category = category.strip()
        if "," in category:
            raise InvalidArgument("parameter type must name one category to change to")
        categories.category(category)
    level = params.get("performanceLevel")
    if level is not None and level not in PERFORMANCE_LEVELS:
        raise InvalidArgument(
            f"parameter performanceLevel={quote(level)} must be one of "
            f"{', '.join(PERFORMANCE_LEVELS)}"
        )
    iops: int | None = None
    if "provisionedIops" in params:
        iops = parse_count("provisionedIops", params["provisionedIops"], MAX_PROVISIONED_IOPS)
    bursting: bool | None = None
    if "burstingEnabled" in params:
        text = params["burstingEnabled"].lower()
        if text not in ("true", "false"):
            raise InvalidArgument("parameter burstingEnabled must be true or false")
        bursting = text == "true"
    return Change(category, level, iops, bursting)


def apply_to_create(params: VolumeParameters, change: Change) -> VolumeParameters:
    """StorageClass parameters with a VolumeAttributesClass's over them, so CreateVolume
    makes the disk the class asks for. A key that applies to none of the categories to try
    is INVALID_ARGUMENT, as it is for ControllerModifyVolume."""
    types = (change.category,) if change.category else params.types
    described = [categories.category(t) for t in types]
    named = ",".join(types)
    levels, iops, bursting = (
        params.performance_levels,
        params.provisioned_iops,
        params.bursting_enabled,
    )
    if change.performance_level is not None:
        if not any(d.performance_levels for d in described):
            raise InvalidArgument(f"performanceLevel applies to cloud_essd, not {named}")
        levels = (change.performance_level,)
    if change.provisioned_iops is not None:
        if not any(d.provisioned_iops for d in described):
            raise InvalidArgument(f"provisionedIops applies to cloud_auto, not {named}")
        iops = change.provisioned_iops
    if change.bursting_enabled is not None:
        if not any(d.bursting for d in described):
            raise InvalidArgument(f"burstingEnabled applies to cloud_auto, not {named}")
        bursting = change.bursting_enabled
    return replace(
        params,
        types=types,
        performance_levels=levels,
        provisioned_iops=iops,
        bursting_enabled=bursting,
    )


@dataclass(frozen=True)
class Target:
    category: str
    performance_level: str
    provisioned_iops: int
    bursting_enabled: bool


def resolve(disk: Disk, change: Change) -> Target:
    """The spec the disk should end with, checked against ECS's rules for its size."""
    category = change.category or disk.category
    desc = categories.category(category)
    if category != disk.category and (desc.regional or categories.is_regional(disk.category)):
        # Its PV's topology names the region or a zone: the other kind would break it.
        raise InvalidArgument(
            f"volume {disk.id} is {disk.category} and cannot become {category}: a regional "
            "disk stays regional and a zonal one zonal"
        )
    if desc.performance_levels:
        kept = disk.performance_level if disk.category == category else ""
        level = change.performance_level or kept or "PL1"
    elif change.performance_level is not None:
        raise InvalidArgument(f"performanceLevel applies to cloud_essd, not {category}")
    else:
        level = ""
    if change.provisioned_iops is not None and not desc.provisioned_iops:
        raise InvalidArgument(f"provisionedIops applies to cloud_auto, not {category}")
    if change.bursting_enabled is not None and not desc.bursting:
        raise InvalidArgument(f"burstingEnabled applies to cloud_auto, not {category}")
    limits = categories.size_range(category, level)
    label = f"{category} {level}".strip()
    if disk.size_gib < limits.min_gib:
        raise InvalidArgument(
            f"{label} needs at least {limits.min_gib} GiB and volume {disk.id} has "
            f"{disk.size_gib} GiB: expand it first"
        )
    iops = disk.provisioned_iops if change.provisioned_iops is None else change.provisioned_iops
    bursting = disk.bursting_enabled if change.bursting_enabled is None else change.bursting_enabled
    return Target(category, level, iops if desc.provisioned_iops else 0, bursting)


def _spec_matches(disk: Disk, target: Target) -> bool:
    """Whether the disk shows the target spec (levels count only where the category has them)."""
    level = categories.effective_level(disk.category, disk.performance_level)
    return (disk.category, level, disk.provisioned_iops) == (
        target.category,
        target.performance_level,
        target.provisioned_iops,
    )


def with_mutable(params: VolumeParameters, mutable: Mapping[str, str]) -> VolumeParameters:
    """A VolumeAttributesClass on CreateVolume: the keys ControllerModifyVolume takes, over
    the StorageClass's parameters."""
    if not mutable:
        return params
    return apply_to_create(params, parse_mutable(mutable))


class Modification:
    """ControllerModifyVolume over the shared disks interface."""

    capabilities = (RPC.MODIFY_VOLUME,)

    def __init__(self, disks: Disks) -> None:
        self._disks = disks

    def modify(
        self, request: csi_pb2.ControllerModifyVolumeRequest, deadline: Deadline
    ) -> csi_pb2.ControllerModifyVolumeResponse:
        check_id(request.volume_id, "volume_id")
        change = parse_mutable(request.mutable_parameters)
        volume_id = validate_volume_id(request.volume_id)
        disks = self._disks
        with disks.locks.hold(volume_id):
            disk = disks.settle(disks.require(volume_id), deadline)
            if disk is None:
                raise NotFound(f"volume {volume_id} does not exist")
            target = resolve(disk, change)
            if not _spec_matches(disk, target):
                disks.cloud.modify_disk_spec(
                    volume_id,
                    category=target.category if target.category != disk.category else "",
                    performance_level=target.performance_level
                    if target.performance_level != (disk.performance_level or "")
                    else "",
                    provisioned_iops=target.provisioned_iops
                    if target.provisioned_iops != disk.provisioned_iops
                    else None,
                )
                log.info("ControllerModifyVolume: %s -> %s", volume_id, target)
                settled = disks.wait_for(
                    volume_id, lambda d: d is None or _spec_matches(d, target), deadline
                )
                if settled is None:
                    raise NotFound(f"volume {volume_id} disappeared while being modified")
                disk = settled
            if change.bursting_enabled is not None and (
                disk.bursting_enabled != change.bursting_enabled
            ):
                disks.cloud.modify_disk_spec(volume_id, bursting_enabled=change.bursting_enabled)
            return csi_pb2.ControllerModifyVolumeResponse()
