"""System events of instances: DescribeInstanceHistoryEvents.

The emulated region has no maintenance of its own, so its events are the ones the admin API
records (``POST /admin/instances/<id>/events``): a guest kernel panic or a hung VM behind a
detach that does not finish is what a client looks for here after DetachDisk.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING, Any

from csi_disk_emulator.actions import Params, action
from csi_disk_emulator.actions.paging import Paging
from csi_disk_emulator.cloud import iso
from csi_disk_emulator.errors import CATALOGUE, EcsError, invalid_parameter

if TYPE_CHECKING:
    from csi_disk_emulator.cloud import Cloud

CATALOGUE.update(
    {
        "EventIdLimitExceeded": (403, "The amount of EventId specified exceeds limit 100."),
        "InvalidParameter.TimeEndBeforeStart": (
            403,
            "The specified end time is earlier than the start time.",
        ),
    }
)

# Event types with their codes. ECS's samples show SystemMaintenance.Reboot 1,
# InstanceExpiration.Stop 34 and SystemFailure.Reboot 65; the other codes are the emulator's.
EVENT_TYPES = {
    "SystemMaintenance.Reboot": 1,
    "SystemMaintenance.Redeploy": 2,
    "InstanceFailure.Reboot": 3,
    "InstanceExpiration.Delete": 33,
    "InstanceExpiration.Stop": 34,
    "AccountUnbalanced.Stop": 35,
    "AccountUnbalanced.Delete": 36,
    "SystemFailure.Reboot": 65,
    "SystemFailure.Redeploy": 66,
    "SystemFailure.Delete": 67,
}
# Lifecycle statuses with their codes (Scheduled 24, Avoided 8 and Executed 0 as in ECS's
# samples; the others are the emulator's).
CYCLE_STATUSES = {
    "Executed": 0,
    "Avoided": 8,
    "Canceled": 16,
    "Scheduled": 24,
    "Executing": 32,
    "Inquiring": 33,
    "Failed": 64,
}
# Without a status filter ECS answers the finished events of the last 30 days.
FINISHED = ("Executed", "Avoided", "Canceled", "Failed")
HISTORY_S = 30 * 86400
RESOURCE_TYPES = ("instance", "ddh", "managehost")
MAX_EVENT_IDS = 100


def record_event(
    cloud: Cloud,
    instance_id: str,
    event_type: str,
    status: str,
    reason: str = "",
    impact_level: str = "",
    disk_id: str = "",
    device: str = "",
    not_before: float | None = None,
) -> str:
    """Record a system event of an existing instance; its id."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    if status not in CYCLE_STATUSES:
        raise ValueError(f"unknown event status {status!r}")
    now = time.time()
    with cloud.store.tx() as db:
        cloud.get_instance(db, instance_id)
        event_id = cloud.new_id(db, "e-")
        db.execute(
            "INSERT INTO events(id, instance_id, event_type, status, reason, impact_level, "
            "disk_id, device, published, not_before, finished) "
            "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event_id,
                instance_id,
                event_type,
                status,
                reason,
                impact_level,
                disk_id,
                device,
                now,
                now if not_before is None else not_before,
                now if status in FINISHED else None,
            ),
        )
    return event_id


def _event_view(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "InstanceId": row["instance_id"],
        "ResourceType": "instance",
        "EventId": row["id"],
        "EventType": {"Code": EVENT_TYPES[row["event_type"]], "Name": row["event_type"]},
        "EventCycleStatus": {"Code": CYCLE_STATUSES[row["status"]], "Name": row["status"]},
        "EventPublishTime": iso(row["published"]),
        "NotBefore": iso(row["not_before"]),
        "EventFinishTime": iso(row["finished"]) if row["finished"] else "",
        "Reason": row["reason"],
        "ReasonCode": "",
        "ImpactLevel": row["impact_level"],
        "ExtendedAttribute": {"DiskId": row["disk_id"], "Device": row["device"]},
    }


def _choices(p: Params, listed: str, single: str, allowed: dict[str, int], limit: int) -> set[str]:
    """``Listed.N`` values, else the single ``single`` value; each must be known."""
    values = p.numbered(listed, limit=limit) or ([p.str(single)] if p.str(single) else [])
    for value in values:
        if value not in allowed:
            name = listed + ".N" if p.numbered(listed, limit=limit) else single
            raise invalid_parameter(name, f"{value[:40]!r} is not one of {', '.join(allowed)}.")
    return set(values)


def _period(p: Params, name: str) -> tuple[float | None, float | None]:
    start, end = p.time(f"{name}.Start"), p.time(f"{name}.End")
    if start is not None and end is not None and end < start:
        raise EcsError(
            "InvalidParameter.TimeEndBeforeStart",
            f"{name}.End is earlier than {name}.Start.",
        )
    return start, end


def _within(value: float, period: tuple[float | None, float | None]) -> bool:
    start, end = period
    return (start is None or value >= start) and (end is None or value <= end)


@action(
    "DescribeInstanceHistoryEvents",
    params=(
        "InstanceId",
        "EventCycleStatus",
        "EventType",
        "ImpactLevel",
        "ResourceType",
        "ResourceGroupId",
        "EventPublishTime.Start",
        "EventPublishTime.End",
        "NotBefore.Start",
        "NotBefore.End",
        "PageNumber",
        "PageSize",
        "MaxResults",
        "NextToken",
    ),
    patterns=(
        r"EventId\.\d+",
        r"InstanceEventCycleStatus\.\d+",
        r"InstanceEventType\.\d+",
        r"ResourceId\.\d+",
        r"Tag\.\d+\.(Key|Value)",
    ),
)
def describe_instance_history_events(cloud: Cloud, p: Params) -> dict[str, Any]:
    event_ids = set(p.numbered("EventId", limit=999))
    if len(event_ids) > MAX_EVENT_IDS:
        raise EcsError("EventIdLimitExceeded")
    statuses = _choices(p, "InstanceEventCycleStatus", "EventCycleStatus", CYCLE_STATUSES, 7)
    types = _choices(p, "InstanceEventType", "EventType", EVENT_TYPES, 30)
    resource_type = p.str("ResourceType", "instance")
    if resource_type not in RESOURCE_TYPES:
        raise invalid_parameter("ResourceType", f"It must be one of {', '.join(RESOURCE_TYPES)}.")
    resources = set(p.numbered("ResourceId")) or ({p.str("InstanceId")} - {""})
    published, not_before = _period(p, "EventPublishTime"), _period(p, "NotBefore")
    paging = Paging.parse(p)
    # Emulated instances carry no tags and belong to no resource group, and the emulator
    # has no dedicated hosts: any of these filters leaves nothing to show.
    nothing = (
        resource_type != "instance"
        or bool(p.indexed("Tag", ("Key", "Value"), limit=20))
        or bool(p.str("ResourceGroupId"))
    )
    found: list[tuple[int, dict[str, Any]]] = []
    history_start = time.time() - HISTORY_S
    if not nothing:
        with cloud.store.tx() as db:
            rows = db.execute("SELECT * FROM events ORDER BY seq").fetchall()
        for row in rows:
            if statuses and row["status"] not in statuses:
                continue
            if not statuses and (row["status"] not in FINISHED or row["published"] < history_start):
                continue
            if event_ids and row["id"] not in event_ids:
                continue
            if resources and row["instance_id"] not in resources:
                continue
            if types and row["event_type"] not in types:
                continue
            if p.str("ImpactLevel") and row["impact_level"] != p.str("ImpactLevel"):
                continue
            if not _within(row["published"], published):
                continue
            if not _within(row["not_before"], not_before):
                continue
            found.append((row["seq"], _event_view(row)))
    return paging.body(found, "InstanceSystemEventSet", "InstanceSystemEventType")
