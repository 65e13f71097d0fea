"""Which disk categories this node's instance type attaches, learned once at start.

ECS answers it as upstream's driver asks it: DescribeAvailableResource for data disks sold on
their own, narrowed to the instance type, in the node's zone, and again with Scope=region for
the regional categories. ``--disk-categories`` states the list instead (``none`` for none),
for nodes that cannot ask ECS. A node whose credentials may not ask (a RAM policy from before
this feature) reports none and restricts nothing, as before; other failures are retried by
the daemon's start-up loop.
"""

from __future__ import annotations

import logging

from csi_disk import topology
from csi_disk.cloud.errors import PermissionDenied
from csi_disk.cloud.port import Cloud

log = logging.getLogger(__name__)

def attachable_categories(
    cloud: Cloud | None, zone: str, instance_type: str, configured: str = ""
) -> tuple[str, ...]:
    """The categories NodeGetInfo reports this node attaches, sorted."""
    stated = topology.parse_disk_categories(configured)
    if stated is not None:
        return tuple(sorted(stated))
    if cloud is None or not instance_type:
        log.warning(
            "no ECS client or instance type to learn which disk categories this node attaches; "
            "reporting none (set --disk-categories to state them)"
        )
        return ()
    try:
        zonal = cloud.available_disks(zone=zone, instance_type=instance_type)
        regional = cloud.available_disks(regional=True, instance_type=instance_type)
    except PermissionDenied as err:
        log.warning(
            "may not ask ECS which disk categories %s attaches (allow "
            "ecs:DescribeAvailableResource); reporting none: %s",
            instance_type,
            err.message,
        )
        return ()
    found = {o.category for o in zonal if o.zone == zone} | {o.category for o in regional}
    names = sorted(c for c in found if topology.is_category_name(c))
    log.info("instance type %s attaches %s in %s", instance_type, ", ".join(names), zone)
    return tuple(names)
