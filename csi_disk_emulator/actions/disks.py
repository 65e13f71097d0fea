"""Disk actions: CreateDisk, DeleteDisk, DescribeDisks, AttachDisk, DetachDisk."""

from __future__ import annotations

import json
import random
import sqlite3
import time
from typing import Any

from csi_disk_emulator import stock
from csi_disk_emulator.actions import Params, action
from csi_disk_emulator.actions.idempotency import create_once
from csi_disk_emulator.actions.paging import Paging
from csi_disk_emulator.blockdev import serial_of
from csi_disk_emulator.cloud import Cloud, iso
from csi_disk_emulator.errors import EcsError, invalid_parameter, missing_parameter
from csi_disk_emulator.topology import ALL_CATEGORIES, is_regional

PERFORMANCE_LEVELS = ("PL0", "PL1", "PL2", "PL3")
MAX_GIB = {"cloud": 2000, "cloud_essd_entry": 32768, "cloud_efficiency": 32768, "cloud_ssd": 32768}
MIN_GIB = {
    "cloud": 5,
    "cloud_efficiency": 20,
    "cloud_ssd": 20,
    "cloud_essd_entry": 10,
    "cloud_auto": 1,
    "cloud_regional_disk_auto": 10,
}
ESSD_MIN_GIB = {"PL0": 1, "PL1": 20, "PL2": 461, "PL3": 1261}
DISK_STATUSES = ("In_use", "Available", "Attaching", "Detaching", "Creating", "ReIniting", "All")
TAG_PATTERNS = (r"Tag\.\d+\.(Key|Value)",)


def size_range(category: str, level: str) -> tuple[int, int]:
    """The sizes (GiB) ECS sells for a category and performance level."""
    if category == "cloud_essd":
        return ESSD_MIN_GIB[level], 65536
    return MIN_GIB[category], MAX_GIB.get(category, 65536)


def _tags(params: Params) -> list[dict[str, str]]:
    # ``limit`` refuses any Tag.N beyond 20, so there are never more than 20 tags.
    tags = params.indexed("Tag", ("Key", "Value"), limit=20)
    for tag in tags:
        if not tag.get("Key"):
            raise missing_parameter("Tag.N.Key")
    return [{"TagKey": t["Key"], "TagValue": t.get("Value", "")} for t in tags]


def _snapshot_size(db: sqlite3.Connection, snapshot_id: str) -> int:
    """Size of a snapshot a disk may be created from: it must exist and be accomplished."""
    row = db.execute("SELECT size, status FROM snapshots WHERE id=?", (snapshot_id,)).fetchone()
    if row is None:
        raise EcsError("InvalidSnapshotId.NotFound")
    if row["status"] != "accomplished":
        raise EcsError("InvalidSnapshot.NotReady")
    return int(row["size"])


@action(
    "CreateDisk",
    params=(
        "ZoneId",
        "DiskName",
        "Description",
        "DiskCategory",
        "Size",
        "SnapshotId",
        "ClientToken",
        "Encrypted",
        "KMSKeyId",
        "EncryptAlgorithm",
        "PerformanceLevel",
        "ResourceGroupId",
        "MultiAttach",
        "ProvisionedIops",
        "BurstingEnabled",
        "InstanceId",
        "StorageSetId",
        "StorageSetPartitionNumber",
        "StorageClusterId",
        "AdvancedFeatures",
    ),
    patterns=(*TAG_PATTERNS, r"Arn\.\d+\.(RoleType|Rolearn|AssumeRoleFor)"),
)
def create_disk(cloud: Cloud, p: Params) -> dict[str, Any]:
    return create_once(cloud, p, "CreateDisk", lambda db: _create(cloud, db, p))


def _create(cloud: Cloud, db: sqlite3.Connection, p: Params) -> dict[str, Any]:
    category = p.str("DiskCategory", "cloud")
    zone_id = p.str("ZoneId")
    if not zone_id and p.str("InstanceId"):
        zone_id = cloud.get_instance(db, p.str("InstanceId"))["zone"]
    if zone_id and cloud.topology.zone(zone_id) is None:
        raise EcsError("InvalidZoneId.NotFound")
    if category not in ALL_CATEGORIES:
        raise EcsError("InvalidDiskCategory.ValueNotSupported")
    # A regional ESSD needs no zone: it lives in the region (CreateDisk's ZoneId: "You do
    # not need to specify ZoneId for a cloud_regional_disk_auto cloud disk").
    regional = is_regional(category)
    if not zone_id and not regional:
        raise missing_parameter("ZoneId")
    level = ""
    if category == "cloud_essd":
        level = p.str("PerformanceLevel", "PL1")
        if level not in PERFORMANCE_LEVELS:
            raise EcsError("InvalidPerformanceLevel.Malformed")
    snapshot_id = p.str("SnapshotId")
    size = p.int("Size", None, 1, 10**6)
    if snapshot_id:
        snapshot_size = _snapshot_size(db, snapshot_id)
        if size is None:
            size = snapshot_size
        elif size < snapshot_size:
            raise EcsError("InvalidDiskSize.TooSmall")
    if size is None:
        raise missing_parameter("Size")
    low, high = size_range(category, level or "PL1")
    if not low <= size <= high:
        raise EcsError(
            "InvalidDiskSize.NotSupported",
            f"The specified disk size {size} GiB is not supported for {category}"
            f"{' ' + level if level else ''}: it must be between {low} and {high} GiB.",
        )
    if regional:
        if category not in cloud.topology.regional_categories:
            raise EcsError(
                "InvalidDataDiskCategory.NotSupported",
                f"The specified region {cloud.topology.region} does not support disk "
                f"category {category}.",
            )
        place, zone_id = cloud.topology.region, ""
    else:
        zone = cloud.topology.zone(zone_id)
        assert zone is not None
        if category not in zone.categories:
            raise EcsError(
                "InvalidDataDiskCategory.NotSupported",
                f"The specified zone {zone_id} does not support disk category {category}.",
            )
        place = zone_id
    multi = p.str("MultiAttach", "Disabled")
    if multi not in ("Enabled", "Disabled"):
        raise invalid_parameter("MultiAttach", "It must be Enabled or Disabled.")
    encrypted = p.bool("Encrypted")
    tags = _tags(p)
    iops = p.int("ProvisionedIops", 0, 0, 1_000_000) or 0
    bursting = p.bool("BurstingEnabled")
    stock.sell_one(db, place, category)
    disk_id = cloud.new_id(db, "d-")
    attrs = {"placement": _placement(cloud, disk_id)} if regional else {}
    db.execute(
        "INSERT INTO disks(id, zone, category, performance_level, size, status, due, name, "
        "description, encrypted, kms_key_id, resource_group_id, multi_attach, provisioned_iops, "
        "bursting, snapshot_id, tags, created, stuck, attrs) "
        "VALUES(?, ?, ?, ?, ?, 'Creating', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            disk_id,
            zone_id,
            category,
            level,
            size,
            cloud.due(cloud.options.latency.create),
            p.str("DiskName"),
            p.str("Description"),
            int(encrypted),
            p.str("KMSKeyId") if encrypted else "",
            p.str("ResourceGroupId"),
            int(multi == "Enabled"),
            iops,
            int(bursting),
            snapshot_id,
            json.dumps(tags),
            time.time(),
            cloud.sticky(db, "CreateDisk"),
            json.dumps(attrs),
        ),
    )
    if snapshot_id:
        cloud.devices.restore(disk_id, snapshot_id, size)
    else:
        cloud.devices.create(disk_id, size)
    return {"DiskId": disk_id, "OrderId": ""}


def _placement(cloud: Cloud, disk_id: str) -> list[str]:
    """The zones a regional disk keeps its data in: two of the region's, fixed per disk."""
    zones = sorted(z.id for z in cloud.topology.zones)
    return sorted(random.Random(disk_id).sample(zones, min(2, len(zones))))


@action("DeleteDisk", params=("DiskId",))
def delete_disk(cloud: Cloud, p: Params) -> dict[str, Any]:
    disk_id = p.required("DiskId")
    with cloud.store.tx() as db:
        disk = cloud.get_disk(db, disk_id)
        if disk["status"] == "Creating":
            raise EcsError("IncorrectDiskStatus.Initializing")
        if cloud.attachments(db, disk_id):
            raise EcsError("IncorrectDiskStatus")
        db.execute("DELETE FROM disks WHERE id=?", (disk_id,))
    cloud.devices.delete(disk_id)
    return {}


def disk_view(
    cloud: Cloud, db: sqlite3.Connection, disk: sqlite3.Row, *, placement: bool = False
) -> dict[str, Any]:
    """A disk as DescribeDisks shows it; ``placement`` adds where a regional disk keeps its
    data (``AdditionalAttributes.N=Placement``)."""
    atts = cloud.attachments(db, disk["id"])
    status = cloud.disk_status(disk, atts)
    visible = [a for a in atts if a["state"] in ("Attached", "Detaching")]
    owner = atts[0] if atts and not disk["multi_attach"] else None
    last = visible[-1] if visible else None
    return {
        "DiskId": disk["id"],
        "RegionId": cloud.topology.region,
        "ZoneId": disk["zone"],
        "Category": disk["category"],
        "PerformanceLevel": disk["performance_level"],
        "Size": disk["size"],
        "Status": status,
        "Type": "data",
        "SerialNumber": serial_of(disk["id"]),
        "InstanceId": owner["instance_id"] if owner else "",
        "Device": owner["device"] if owner and owner["state"] != "Attaching" else "",
        "AttachedTime": iso(last["attached_time"]) if last and last["attached_time"] else "",
        "Attachments": {
            "Attachment": [
                {
                    "InstanceId": a["instance_id"],
                    "Device": a["device"],
                    "AttachedTime": iso(a["attached_time"]) if a["attached_time"] else "",
                }
                for a in visible
            ]
        },
        "Tags": {"Tag": json.loads(disk["tags"])},
        "MultiAttach": "Enabled" if disk["multi_attach"] else "Disabled",
        "Encrypted": bool(disk["encrypted"]),
        "KMSKeyId": disk["kms_key_id"],
        "SourceSnapshotId": disk["snapshot_id"],
        "DeleteWithInstance": bool(disk["delete_with_instance"]),
        "DeleteAutoSnapshot": False,
        "EnableAutoSnapshot": False,
        "ResourceGroupId": disk["resource_group_id"],
        "DiskName": disk["name"],
        "Description": disk["description"],
        "CreationTime": iso(disk["created"]),
        "Portable": True,
        "DiskChargeType": "PostPaid",
        "ProvisionedIops": disk["provisioned_iops"],
        "BurstingEnabled": bool(disk["bursting"]),
        "IOPS": _iops(disk["category"], disk["performance_level"], disk["size"]),
        "OperationLocks": {"OperationLock": []},
        **_placement_view(disk, placement),
    }


def _placement_view(disk: sqlite3.Row, wanted: bool) -> dict[str, Any]:
    if not wanted or not is_regional(disk["category"]):
        return {}
    zones = json.loads(disk["attrs"] or "{}").get("placement", [])
    return {"Placement": {"ZoneIds": "\n".join(zones)}}


def _iops(category: str, level: str, size: int) -> int:
    """A plausible IOPS figure; informational only."""
    if category == "cloud_essd":
        per_gib, cap = {"PL0": (0, 10000), "PL1": (50, 50000), "PL2": (50, 100000)}.get(
            level, (50, 1000000)
        )
        return min(1800 + per_gib * size, cap)
    return min(1800 + 30 * size, 25000)


@action(
    "DescribeDisks",
    params=(
        "DiskIds",
        "ZoneId",
        "InstanceId",
        "Status",
        "Category",
        "DiskType",
        "PageNumber",
        "PageSize",
        "NextToken",
        "MaxResults",
        "DiskName",
        "SnapshotId",
        "Portable",
        "DeleteWithInstance",
        "DeleteAutoSnapshot",
        "EnableAutoSnapshot",
        "MultiAttach",
        "ResourceGroupId",
        "Encrypted",
        "KMSKeyId",
        "AutoSnapshotPolicyId",
        "LockReason",
        "DiskChargeType",
        "EnableShared",
        "EnableAutomatedSnapshotPolicy",
        "PerformanceLevel",
        "DryRun",
    ),
    patterns=(
        *TAG_PATTERNS,
        r"Filter\.\d+\.(Key|Value)",
        r"AdditionalAttributes\.\d+",
    ),
)
def describe_disks(cloud: Cloud, p: Params) -> dict[str, Any]:
    ids = p.json_list("DiskIds", "InvalidDiskIds.Malformed", 100)
    status = p.str("Status")
    if status and status not in DISK_STATUSES:
        raise invalid_parameter("Status")
    category = p.str("Category")
    if category and category not in (*ALL_CATEGORIES, "all"):
        raise invalid_parameter("Category")
    level = p.str("PerformanceLevel")
    if level and level not in PERFORMANCE_LEVELS:
        raise invalid_parameter("PerformanceLevel")
    disk_type = p.str("DiskType", "all")
    if disk_type not in ("all", "system", "data"):
        raise invalid_parameter("DiskType")
    tag_filters = p.indexed("Tag", ("Key", "Value"), limit=20)
    extra = p.numbered("AdditionalAttributes")  # only Placement adds anything here
    paging = Paging.parse(p, max_results_limit=500)
    wanted = None if ids is None else set(ids)
    zone, instance_id, name = p.str("ZoneId"), p.str("InstanceId"), p.str("DiskName")
    views = []
    # Emulated disks are all data disks: a listing of system disks is empty.
    with cloud.store.tx() as db:
        rows = (
            []
            if disk_type == "system"
            else db.execute("SELECT * FROM disks ORDER BY seq").fetchall()
        )
        for disk in rows:
            # Column filters first: only disks that pass them cost a view (more queries).
            if wanted is not None and disk["id"] not in wanted:
                continue
            if zone and disk["zone"] != zone:
                continue
            if category not in ("", "all") and disk["category"] != category:
                continue
            if name and disk["name"] != name:
                continue
            if level and disk["performance_level"] != level:
                continue
            view = disk_view(cloud, db, disk, placement="Placement" in extra)
            if status not in ("", "All") and view["Status"] != status:
                continue
            if instance_id and instance_id not in {
                a["instance_id"] for a in cloud.attachments(db, disk["id"])
            }:
                continue
            if not _tags_match(view["Tags"]["Tag"], tag_filters):
                continue
            views.append((disk["seq"], view))
    return paging.body(views, "Disks", "Disk")


def _tags_match(tags: list[dict[str, str]], filters: list[dict[str, str]]) -> bool:
    have = {t["TagKey"]: t["TagValue"] for t in tags}
    for wanted in filters:
        key = wanted.get("Key", "")
        if key not in have:
            return False
        if "Value" in wanted and have[key] != wanted["Value"]:
            return False
    return True


@action(
    "AttachDisk",
    params=(
        "InstanceId",
        "DiskId",
        "DeleteWithInstance",
        "Bootable",
        "Password",
        "KeyPairName",
        "Force",
        "Device",
    ),
)
def attach_disk(cloud: Cloud, p: Params) -> dict[str, Any]:
    instance_id = p.required("InstanceId")
    disk_id = p.required("DiskId")
    delete_with_instance = p.bool("DeleteWithInstance")
    force = p.bool("Force")
    taken: sqlite3.Row | None = None
    with cloud.store.tx() as db:
        inst = cloud.get_instance(db, instance_id)
        disk = cloud.get_disk(db, disk_id)
        atts = cloud.attachments(db, disk_id)
        status = cloud.disk_status(disk, atts)
        regional = is_regional(disk["category"])
        if force and not regional:
            raise EcsError("InvalidParameterForce.DiskCategoryNotSupported")
        if force and disk["multi_attach"]:
            raise EcsError("InvalidParameterForce.MultiAttachDiskNotSupported")
        if status == "Creating":
            raise EcsError("IncorrectDiskStatus.Initializing")
        if any(a["instance_id"] == instance_id for a in atts):
            raise EcsError("IncorrectDiskStatus", "The disk is already attached to the instance.")
        if force and len(atts) == 1 and atts[0]["state"] in ("Attached", "Detaching"):
            taken = _force_from(cloud, db, atts[0], inst)
            atts, status = [], "Available"
        if status in ("Attaching", "Detaching"):
            raise EcsError("IncorrectDiskStatus", f"The disk is {status}.")
        if atts and not disk["multi_attach"]:
            raise EcsError("IncorrectDiskStatus", "The disk is attached to another instance.")
        if inst["status"] not in ("Running", "Stopped"):
            raise EcsError("IncorrectInstanceStatus", f"The instance is {inst['status']}.")
        if not regional and disk["zone"] != inst["zone"]:
            raise EcsError("ResourcesNotInSameZone")
        itype = cloud.instance_type(inst["instance_type"])
        if disk["category"] not in itype.categories:
            raise EcsError(
                "InvalidInstanceType.NotSupportDiskCategory",
                f"The instanceType {itype.name} of the specified instance does not support "
                f"disk category {disk['category']}.",
            )
        on_instance = db.execute(
            "SELECT state FROM attachments WHERE instance_id=?", (instance_id,)
        ).fetchall()
        if len(on_instance) >= itype.disk_quantity:
            raise EcsError("InstanceDiskLimitExceeded")
        attaching = sum(1 for r in on_instance if r["state"] == "Attaching")
        if attaching >= inst["max_attaching"]:
            raise EcsError("OperationConflict.DisksAttachingParallellyExceed")
        if taken is not None:
            db.execute(
                "DELETE FROM attachments WHERE disk_id=? AND instance_id=?",
                (disk_id, taken["instance_id"]),
            )
        device = cloud.free_device(db, instance_id)
        db.execute(
            "INSERT INTO attachments(disk_id, instance_id, device, state, due) "
            "VALUES(?, ?, ?, 'Attaching', ?)",
            (disk_id, instance_id, device, cloud.due(cloud.options.latency.attach)),
        )
        db.execute(
            "UPDATE disks SET delete_with_instance=?, stuck=MAX(stuck, ?) WHERE id=?",
            (int(delete_with_instance), cloud.sticky(db, "AttachDisk"), disk_id),
        )
    if taken is not None:
        cloud.drop_device(disk_id, taken["instance_id"], taken["loop"])
    cloud.wake()
    return {}


def _force_from(
    cloud: Cloud, db: sqlite3.Connection, held: sqlite3.Row, target: sqlite3.Row
) -> sqlite3.Row:
    """The attachment a force attach takes a regional disk from: ECS allows it only from an
    instance in another zone than the target (a zone that failed), and detaches it there."""
    holder = cloud.get_instance(db, held["instance_id"])
    if holder["zone"] == target["zone"]:
        raise EcsError("InvalidInstance.ZoneConflict")
    return held


@action("DetachDisk", params=("InstanceId", "DiskId", "DeleteWithInstance"))
def detach_disk(cloud: Cloud, p: Params) -> dict[str, Any]:
    instance_id = p.required("InstanceId")
    disk_id = p.required("DiskId")
    with cloud.store.tx() as db:
        inst = cloud.get_instance(db, instance_id)
        cloud.get_disk(db, disk_id)
        att = db.execute(
            "SELECT * FROM attachments WHERE disk_id=? AND instance_id=?", (disk_id, instance_id)
        ).fetchone()
        if att is None:
            raise EcsError("DependencyViolation")
        if att["state"] != "Attached":
            raise EcsError("IncorrectDiskStatus", f"The disk is {att['state']}.")
        detaching = db.execute(
            "SELECT COUNT(*) AS n FROM attachments WHERE instance_id=? AND state='Detaching'",
            (instance_id,),
        ).fetchone()["n"]
        if detaching >= inst["max_detaching"]:
            raise EcsError("InvalidOperation.Conflict")
        db.execute(
            "UPDATE attachments SET state='Detaching', due=? WHERE disk_id=? AND instance_id=?",
            (cloud.due(cloud.options.latency.detach), disk_id, instance_id),
        )
        if cloud.sticky(db, "DetachDisk"):
            db.execute("UPDATE disks SET stuck=1 WHERE id=?", (disk_id,))
    cloud.wake()
    return {}
