"""Snapshot actions: CreateSnapshot, DeleteSnapshot, DescribeSnapshots.

A snapshot copies the disk file sparsely the moment it is taken (point-in-time data), then
reports ``progressing`` until its due time, as ECS does while it uploads; only an
``accomplished`` snapshot can seed a disk (CreateDisk checks that).
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from csi_disk_emulator.actions import Params, action
from csi_disk_emulator.actions.disks import TAG_PATTERNS, _tags, _tags_match
from csi_disk_emulator.actions.idempotency import create_once
from csi_disk_emulator.actions.paging import Paging
from csi_disk_emulator.cloud import Cloud, iso, transition
from csi_disk_emulator.errors import CATALOGUE, EcsError, invalid_parameter

CATALOGUE.update(
    {
        "QuotaExceed.Snapshot": (403, "The snapshot quota of the disk is exceeded."),
        "InvalidSnapshot.NotReady": (403, "The specified snapshot has not completed yet."),
        "InvalidSnapshotIds.Malformed": (400, "The specified parameter SnapshotIds is not valid."),
        "SnapshotCreatedDisk": (
            403,
            "The snapshot has been used to create disks; set Force to delete it anyway.",
        ),
    }
)

DEFAULT_QUOTA_PER_DISK = 256  # ECS: at most 256 manual snapshots per disk
SNAPSHOT_STATUSES = ("progressing", "accomplished", "failed", "all")


def quota_per_disk(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM meta WHERE key='snapshot_quota_per_disk'").fetchone()
    return DEFAULT_QUOTA_PER_DISK if row is None else int(json.loads(row["value"]))


@transition
def complete_snapshots(db: sqlite3.Connection, now: float) -> float | None:
    db.execute(
        "UPDATE snapshots SET status='accomplished', due=NULL "
        "WHERE status='progressing' AND stuck=0 AND due<=?",
        (now,),
    )
    row = db.execute(
        "SELECT MIN(due) AS t FROM snapshots WHERE status='progressing' AND stuck=0"
    ).fetchone()
    return None if row["t"] is None else float(row["t"])


@action(
    "CreateSnapshot",
    params=(
        "DiskId",
        "SnapshotName",
        "Description",
        "ClientToken",
        "RetentionDays",
        "Category",
        "InstantAccess",
        "InstantAccessRetentionDays",
        "ResourceGroupId",
        "StorageLocationArn",
    ),
    patterns=TAG_PATTERNS,
)
def create_snapshot(cloud: Cloud, p: Params) -> dict[str, Any]:
    return create_once(cloud, p, "CreateSnapshot", lambda db: _create(cloud, db, p))


def _create(cloud: Cloud, db: sqlite3.Connection, p: Params) -> dict[str, Any]:
    disk_id = p.required("DiskId")
    name = p.str("SnapshotName")
    if name and (len(name) < 2 or len(name) > 128 or name.startswith(("auto", "http"))):
        raise invalid_parameter("SnapshotName", "It must be 2-128 characters, not auto*/http*.")
    retention = p.int("RetentionDays", None, 1, 65536)
    tags = _tags(p)
    disk = cloud.get_disk(db, disk_id)
    if disk["status"] == "Creating":
        raise EcsError("IncorrectDiskStatus", "The disk is being created.")
    count = db.execute(
        "SELECT COUNT(*) AS n FROM snapshots WHERE disk_id=?", (disk_id,)
    ).fetchone()["n"]
    if count >= quota_per_disk(db):
        raise EcsError("QuotaExceed.Snapshot")
    snapshot_id = cloud.new_id(db, "s-")
    db.execute(
        "INSERT INTO snapshots(id, disk_id, disk_category, size, status, due, stuck, name, "
        "description, retention_days, tags, created) "
        "VALUES(?, ?, ?, ?, 'progressing', ?, ?, ?, ?, ?, ?, ?)",
        (
            snapshot_id,
            disk_id,
            disk["category"],
            disk["size"],
            cloud.due(cloud.options.latency.snapshot),
            cloud.sticky(db, "CreateSnapshot"),
            name,
            p.str("Description"),
            retention,
            json.dumps(tags),
            time.time(),
        ),
    )
    cloud.devices.take_snapshot(disk_id, snapshot_id)
    return {"SnapshotId": snapshot_id}


@action("DeleteSnapshot", params=("SnapshotId", "Force"))
def delete_snapshot(cloud: Cloud, p: Params) -> dict[str, Any]:
    snapshot_id = p.required("SnapshotId")
    force = p.bool("Force")
    with cloud.store.tx() as db:
        row = db.execute("SELECT id FROM snapshots WHERE id=?", (snapshot_id,)).fetchone()
        if row is None:
            raise EcsError("InvalidSnapshotId.NotFound")
        used = db.execute("SELECT 1 FROM disks WHERE snapshot_id=?", (snapshot_id,)).fetchone()
        if used is not None and not force:
            raise EcsError("SnapshotCreatedDisk")
        db.execute("DELETE FROM snapshots WHERE id=?", (snapshot_id,))
    cloud.devices.delete_snapshot(snapshot_id)
    return {}


def snapshot_view(cloud: Cloud, db: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
    """A snapshot as DescribeSnapshots shows it."""
    used = db.execute("SELECT 1 FROM disks WHERE snapshot_id=?", (row["id"],)).fetchone()
    if row["status"] == "accomplished":
        progress = "100%"
    else:
        total = max(1e-6, (row["due"] or row["created"]) - row["created"])
        done = min(0.99, max(0.0, (time.time() - row["created"]) / total))
        progress = f"{int(done * 100)}%"
    size_file = cloud.devices.snapshot_file(row["id"])
    try:
        used_bytes = size_file.stat().st_blocks * 512
    except OSError:
        used_bytes = 0
    return {
        "SnapshotId": row["id"],
        "SnapshotName": row["name"],
        "Description": row["description"],
        "SourceDiskId": row["disk_id"],
        "SourceDiskSize": str(row["size"]),
        "SourceDiskType": "data",
        "SourceStorageType": "disk",
        "Category": "standard",
        "SnapshotType": "user",
        "ProductCode": "",
        "Status": row["status"],
        "Progress": progress,
        "Available": row["status"] == "accomplished",
        "InstantAccess": False,
        "RetentionDays": row["retention_days"] or 0,
        "CreationTime": iso(row["created"]),
        "LastModifiedTime": iso(row["created"]),
        "RegionId": cloud.topology.region,
        "Encrypted": False,
        "KMSKeyId": "",
        "ResourceGroupId": "",
        "SnapshotSN": f"64{row['seq']:018d}",
        "FullSnapshotSizeInBytes": used_bytes,
        "Usage": "disk" if used else "none",
        "Tags": {"Tag": json.loads(row["tags"])},
    }


@action(
    "DescribeSnapshots",
    params=(
        "SnapshotIds",
        "DiskId",
        "InstanceId",
        "SnapshotName",
        "Status",
        "SnapshotType",
        "SourceDiskType",
        "Usage",
        "Category",
        "Encrypted",
        "KMSKeyId",
        "ResourceGroupId",
        "SnapshotLinkId",
        "PageNumber",
        "PageSize",
        "NextToken",
        "MaxResults",
        "DryRun",
    ),
    patterns=(*TAG_PATTERNS, r"Filter\.\d+\.(Key|Value)"),
)
def describe_snapshots(cloud: Cloud, p: Params) -> dict[str, Any]:
    ids = p.json_list("SnapshotIds", "InvalidSnapshotIds.Malformed", 100)
    status = p.str("Status", "all")
    if status not in SNAPSHOT_STATUSES:
        raise invalid_parameter("Status")
    tag_filters = p.indexed("Tag", ("Key", "Value"), limit=20)
    paging = Paging.parse(p)
    with cloud.store.tx() as db:
        rows = db.execute("SELECT * FROM snapshots ORDER BY seq").fetchall()
        views = []
        for row in rows:
            if ids is not None and row["id"] not in ids:
                continue
            if p.str("DiskId") and row["disk_id"] != p.str("DiskId"):
                continue
            if p.str("SnapshotName") and row["name"] != p.str("SnapshotName"):
                continue
            if status != "all" and row["status"] != status:
                continue
            view = snapshot_view(cloud, db, row)
            if not _tags_match(view["Tags"]["Tag"], tag_filters):
                continue
            views.append((row["seq"], view))
    return paging.body(views, "Snapshots", "Snapshot")
