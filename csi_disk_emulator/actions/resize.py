"""Changing an existing disk: ResizeDisk, ModifyDiskSpec and ModifyDiskAttribute.

ResizeDisk takes effect at once (online: the attached loop devices see the new size;
offline on an attached disk: only after the disk is attached again, as after an instance
restart on ECS). ModifyDiskSpec lands asynchronously, as a task DescribeTasks follows, and is
followed by a cooling period in which ECS refuses another change (``DiskInCoolingPeriod``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from csi_disk_emulator.actions import Params, action
from csi_disk_emulator.actions.disks import MIN_GIB, PERFORMANCE_LEVELS, size_range
from csi_disk_emulator.actions.tasks import finish_task, start_task
from csi_disk_emulator.cloud import Cloud, transition
from csi_disk_emulator.errors import CATALOGUE, EcsError, invalid_parameter, missing_parameter
from csi_disk_emulator.topology import ALL_CATEGORIES

CATALOGUE.update(
    {
        "OperationDenied": (403, "The type of the disk does not support the operation."),
        "OperationDenied.PerformanceLevelNotMatch": (
            403,
            "The specified PerformanceLevel and disk size do not match.",
        ),
        "NoChangeInDiskCategoryAndPerformanceLevel": (
            403,
            "There is no change between the parameters transmitted and the current.",
        ),
        "DiskInCoolingPeriod": (
            403,
            "There is a cooling period after the disk is successfully modified.",
        ),
        "InvalidOperation.MultiAttachDisk": (
            403,
            "Multi attach disk does not support this operation.",
        ),
        "InvalidInstanceType.NotSupportDiskCategory": (
            403,
            "The instanceType of the specified instance does not support this disk category.",
        ),
        "DryRunOperation": (400, "Request validation has been passed with DryRun flag set."),
    }
)

# Categories ModifyDiskSpec may change a disk to (basic disks cannot be changed).
SPEC_CATEGORIES = ("cloud_efficiency", "cloud_ssd", "cloud_essd", "cloud_auto", "cloud_essd_entry")


def cooling_seconds(cloud: Cloud, db: sqlite3.Connection) -> float:
    """The cooling period after a spec change: admin-set, else the scaled default."""
    row = db.execute("SELECT value FROM meta WHERE key='modify_cooling_s'").fetchone()
    if row is not None:
        return float(json.loads(row["value"]))
    return cloud.options.latency.modify_cooling * cloud.options.latency.scale


def _attrs(disk: sqlite3.Row) -> dict[str, Any]:
    return dict(json.loads(disk["attrs"] or "{}"))


def _store_attrs(db: sqlite3.Connection, disk_id: str, attrs: dict[str, Any]) -> None:
    db.execute("UPDATE disks SET attrs=? WHERE id=?", (json.dumps(attrs), disk_id))


@transition
def complete_spec_changes(db: sqlite3.Connection, now: float) -> float | None:
    """Land due spec changes; start their cooling period."""
    nxt: float | None = None
    rows = db.execute(
        "SELECT id, attrs FROM disks WHERE stuck=0 AND attrs LIKE '%spec_pending%'"
    ).fetchall()
    for row in rows:
        attrs = _attrs(row)
        pending = attrs.get("spec_pending")
        if not pending:
            continue
        if pending["due"] > now:
            nxt = pending["due"] if nxt is None else min(nxt, pending["due"])
            continue
        db.execute(
            "UPDATE disks SET category=?, performance_level=?, provisioned_iops=? WHERE id=?",
            (pending["category"], pending["level"], pending["iops"], row["id"]),
        )
        if pending.get("task_id"):
            finish_task(db, pending["task_id"], now)
        attrs.pop("spec_pending")
        attrs["cooling_until"] = now + pending["cooling"]
        _store_attrs(db, row["id"], attrs)
    return nxt


def _settled_status(cloud: Cloud, db: sqlite3.Connection, disk: sqlite3.Row) -> str:
    status = cloud.disk_status(disk, cloud.attachments(db, disk["id"]))
    if status == "Creating":
        raise EcsError("IncorrectDiskStatus.Initializing")
    if status not in ("Available", "In_use"):
        raise EcsError("IncorrectDiskStatus", f"The disk is {status}.")
    return status


def _attached_instances_ok(cloud: Cloud, db: sqlite3.Connection, disk_id: str) -> None:
    for att in cloud.attachments(db, disk_id):
        inst = cloud.get_instance(db, att["instance_id"])
        if inst["status"] not in ("Running", "Stopped"):
            raise EcsError("IncorrectInstanceStatus", f"The instance is {inst['status']}.")


@action("ResizeDisk", params=("DiskId", "NewSize", "Type", "ClientToken"))
def resize_disk(cloud: Cloud, p: Params) -> dict[str, Any]:
    disk_id = p.required("DiskId")
    new_size = p.int("NewSize", None, 1, 10**6)
    if new_size is None:
        raise missing_parameter("NewSize")
    kind = p.str("Type", "offline")
    if kind not in ("online", "offline"):
        raise invalid_parameter("Type", "It must be online or offline.")
    with cloud.store.tx() as db:
        disk = cloud.get_disk(db, disk_id)
        status = _settled_status(cloud, db, disk)
        _attached_instances_ok(cloud, db, disk_id)
        if new_size <= disk["size"]:
            raise EcsError(
                "InvalidDiskSize.TooSmall",
                f"Specified new disk size {new_size} GiB is not larger than the current "
                f"{disk['size']} GiB.",
            )
        _, high = size_range(disk["category"], disk["performance_level"] or "PL1")
        if new_size > high:
            raise invalid_parameter("NewSize", f"It must be at most {high} for {disk['category']}.")
        if kind == "online":
            if disk["category"] == "cloud":
                raise EcsError("OperationDenied", "Basic disks cannot be resized online.")
            if status != "In_use":
                raise EcsError(
                    "IncorrectDiskStatus", "An online resize needs the disk to be In_use."
                )
        db.execute("UPDATE disks SET size=? WHERE id=?", (new_size, disk_id))
        loops = [a["loop"] for a in cloud.attachments(db, disk_id) if a["loop"]]
    with cloud._dev_lock:
        if kind == "online" and loops:
            for loop in loops:
                cloud.devices.grow(disk_id, new_size, loop)
        else:
            cloud.devices.grow(disk_id, new_size, None)
    return {"OrderId": ""}


@action(
    "ModifyDiskSpec",
    params=(
        "DiskId",
        "DiskCategory",
        "PerformanceLevel",
        "ProvisionedIops",
        "DryRun",
        "DestinationZoneId",
    ),
    patterns=(r"PerformanceControlOptions\.(IOPS|Throughput|Recover)",),
)
def modify_disk_spec(cloud: Cloud, p: Params) -> dict[str, Any]:
    disk_id = p.required("DiskId")
    category_param = p.str("DiskCategory")
    if category_param and category_param not in ALL_CATEGORIES:
        raise EcsError("InvalidDiskCategory.ValueNotSupported")
    level_param = p.str("PerformanceLevel")
    if level_param and level_param not in PERFORMANCE_LEVELS:
        raise EcsError("InvalidPerformanceLevel.Malformed")
    iops = p.int("ProvisionedIops", None, 0, 1_000_000)
    with cloud.store.tx() as db:
        disk = cloud.get_disk(db, disk_id)
        _settled_status(cloud, db, disk)
        _attached_instances_ok(cloud, db, disk_id)
        if disk["multi_attach"]:
            raise EcsError("InvalidOperation.MultiAttachDisk")
        category = category_param or disk["category"]
        if category not in SPEC_CATEGORIES or disk["category"] == "cloud":
            raise EcsError("InvalidDiskCategory.NotSupported")
        if category == "cloud_essd":
            current = disk["performance_level"] if disk["category"] == "cloud_essd" else ""
            level = level_param or current or "PL1"
        elif level_param:
            raise EcsError(
                "InvalidPerformanceLevel.Malformed",
                "PerformanceLevel applies to cloud_essd disks only.",
            )
        else:
            level = ""
        if iops is not None and category != "cloud_auto":
            raise invalid_parameter("ProvisionedIops", "It applies to cloud_auto disks only.")
        new_iops = disk["provisioned_iops"] if iops is None else iops
        if (category, level, new_iops) == (
            disk["category"],
            disk["performance_level"],
            disk["provisioned_iops"],
        ):
            raise EcsError("NoChangeInDiskCategoryAndPerformanceLevel")
        if category == "cloud_essd":
            low, _ = size_range("cloud_essd", level)
            if disk["size"] < low:
                raise EcsError(
                    "OperationDenied.PerformanceLevelNotMatch",
                    f"Performance level {level} needs at least {low} GiB; the disk has "
                    f"{disk['size']} GiB.",
                )
        elif disk["size"] < MIN_GIB.get(category, 1):
            raise EcsError(
                "InvalidDiskSize.NotSupported",
                f"{category} needs at least {MIN_GIB[category]} GiB.",
            )
        zone = cloud.topology.zone(disk["zone"])
        if zone is not None and category not in zone.categories:
            raise EcsError("InvalidDiskCategory.NotSupported")
        for att in cloud.attachments(db, disk_id):
            inst = cloud.get_instance(db, att["instance_id"])
            if category not in cloud.instance_type(inst["instance_type"]).categories:
                raise EcsError("InvalidInstanceType.NotSupportDiskCategory")
        attrs = _attrs(disk)
        if attrs.get("spec_pending") or attrs.get("cooling_until", 0) > time.time():
            raise EcsError("DiskInCoolingPeriod")
        if p.bool("DryRun"):
            raise EcsError("DryRunOperation")
        due = cloud.due(cloud.options.latency.modify)
        task_id = start_task(cloud, db, "ModifyDiskSpec", disk_id, due)
        attrs["spec_pending"] = {
            "category": category,
            "level": level,
            "iops": new_iops,
            "due": due,
            "cooling": cooling_seconds(cloud, db),
            "task_id": task_id,
        }
        _store_attrs(db, disk_id, attrs)
    cloud.wake()
    return {"TaskId": task_id, "OrderId": ""}


@action(
    "ModifyDiskAttribute",
    params=(
        "DiskId",
        "DiskName",
        "Description",
        "DeleteWithInstance",
        "DeleteAutoSnapshot",
        "EnableAutoSnapshot",
        "BurstingEnabled",
    ),
    patterns=(r"DiskIds\.\d+",),
)
def modify_disk_attribute(cloud: Cloud, p: Params) -> dict[str, Any]:
    ids = p.numbered("DiskIds") or [p.required("DiskId")]
    with cloud.store.tx() as db:
        for disk_id in ids:
            disk = cloud.get_disk(db, disk_id)
            if "DiskName" in p.raw:
                db.execute("UPDATE disks SET name=? WHERE id=?", (p.str("DiskName"), disk_id))
            if "Description" in p.raw:
                db.execute(
                    "UPDATE disks SET description=? WHERE id=?", (p.str("Description"), disk_id)
                )
            if "DeleteWithInstance" in p.raw:
                db.execute(
                    "UPDATE disks SET delete_with_instance=? WHERE id=?",
                    (int(p.bool("DeleteWithInstance")), disk_id),
                )
            if "BurstingEnabled" in p.raw:
                if disk["category"] != "cloud_auto":
                    raise invalid_parameter("BurstingEnabled", "It applies to cloud_auto disks.")
                db.execute(
                    "UPDATE disks SET bursting=? WHERE id=?",
                    (int(p.bool("BurstingEnabled")), disk_id),
                )
    return {}
