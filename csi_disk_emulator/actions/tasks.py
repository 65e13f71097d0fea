"""Asynchronous tasks: DescribeTasks and DescribeTaskAttribute.

An action that answers with a ``TaskId`` (ModifyDiskSpec) starts a task row in its own
transaction; the transition that lands the change finishes it. A task stays ``Processing``
until then (also while its disk is held by the admin API), ends ``Finished``, or ``Failed``
when its disk is deleted first.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING, Any

from csi_disk_emulator.actions import Params, action
from csi_disk_emulator.actions.paging import Paging
from csi_disk_emulator.cloud import iso, transition
from csi_disk_emulator.errors import CATALOGUE, EcsError, invalid_parameter, missing_parameter

if TYPE_CHECKING:
    from csi_disk_emulator.cloud import Cloud

CATALOGUE.update({"InvalidTaskId.NotFound": (400, 'The specified "TaskId" is not found.')})

# The operations DescribeTasks knows tasks of (ECS's TaskAction values).
TASK_ACTIONS = (
    "ImportImage",
    "ExportImage",
    "RedeployInstance",
    "ModifyDiskSpec",
    "ArchiveSnapshot",
)
# ECS filters on these statuses only; any other TaskStatus value is ignored.
FILTERED_STATUSES = ("Finished", "Processing", "Failed")
MAX_TASK_IDS = 100
# The related item DescribeTaskAttribute names a task's resource by.
RESOURCE_ITEM = {"ModifyDiskSpec": "DiskId"}


def start_task(
    cloud: Cloud, db: sqlite3.Connection, task_action: str, resource_id: str, due: float
) -> str:
    """Record a Processing task for ``resource_id``; its id."""
    task_id = cloud.new_id(db, "t-")
    db.execute(
        "INSERT INTO tasks(id, action, resource_id, status, created, due) "
        "VALUES(?, ?, ?, 'Processing', ?, ?)",
        (task_id, task_action, resource_id, time.time(), due),
    )
    return task_id


def finish_task(db: sqlite3.Connection, task_id: str, now: float) -> None:
    db.execute(
        "UPDATE tasks SET status='Finished', finished=? WHERE id=? AND status='Processing'",
        (now, task_id),
    )


@transition
def fail_orphaned_tasks(db: sqlite3.Connection, now: float) -> float | None:
    """A disk deleted (or released with its instance) before its change landed fails the
    task, which would otherwise stay Processing for ever."""
    db.execute(
        "UPDATE tasks SET status='Failed', finished=?, error_code='InvalidDiskId.NotFound', "
        "error_message='The disk was deleted before the task finished.' "
        "WHERE status='Processing' AND action='ModifyDiskSpec' "
        "AND resource_id NOT IN (SELECT id FROM disks)",
        (now,),
    )
    return None


def _progress(row: sqlite3.Row) -> str:
    if row["status"] != "Processing":
        return "100%"
    total = max(1e-6, (row["due"] or row["created"]) - row["created"])
    done = min(0.99, max(0.0, (time.time() - row["created"]) / total))
    return f"{int(done * 100)}%"


def task_view(row: sqlite3.Row) -> dict[str, Any]:
    """A task as DescribeTasks lists it."""
    return {
        "TaskId": row["id"],
        "TaskAction": row["action"],
        "TaskStatus": row["status"],
        "SupportCancel": "false",
        "CreationTime": iso(row["created"]),
        "FinishedTime": iso(row["finished"]) if row["finished"] else "",
        "ResourceId": row["resource_id"],
    }


@action(
    "DescribeTasks",
    params=(
        "TaskAction",
        "TaskIds",
        "TaskStatus",
        "TaskGroupId",
        "StartTime",
        "EndTime",
        "PageNumber",
        "PageSize",
    ),
    patterns=(r"ResourceIds\.\d+",),
)
def describe_tasks(cloud: Cloud, p: Params) -> dict[str, Any]:
    task_action = p.str("TaskAction")
    if task_action and task_action not in TASK_ACTIONS:
        raise invalid_parameter("TaskAction", f"It must be one of {', '.join(TASK_ACTIONS)}.")
    ids = {t.strip() for t in p.str("TaskIds").split(",") if t.strip()}
    if len(ids) > MAX_TASK_IDS:
        raise invalid_parameter("TaskIds", f"At most {MAX_TASK_IDS} task ids are allowed.")
    status = p.str("TaskStatus")
    start, end = p.time("StartTime"), p.time("EndTime")
    resources = set(p.numbered("ResourceIds"))
    paging = Paging.parse(p)
    found: list[tuple[int, dict[str, Any]]] = []
    # The emulator makes no task groups: a group names none of its tasks.
    if not p.str("TaskGroupId"):
        with cloud.store.tx() as db:
            rows = db.execute("SELECT * FROM tasks ORDER BY seq").fetchall()
        for row in rows:
            if ids and row["id"] not in ids:
                continue
            if task_action and row["action"] != task_action:
                continue
            if status in FILTERED_STATUSES and row["status"] != status:
                continue
            if resources and row["resource_id"] not in resources:
                continue
            if (start is not None and row["created"] < start) or (
                end is not None and row["created"] > end
            ):
                continue
            found.append((row["seq"], task_view(row)))
    return {"RegionId": cloud.topology.region, **paging.body(found, "TaskSet", "Task")}


@action("DescribeTaskAttribute", params=("TaskId",))
def describe_task_attribute(cloud: Cloud, p: Params) -> dict[str, Any]:
    task_id = p.str("TaskId")
    if not task_id:
        raise missing_parameter("TaskId")
    with cloud.store.tx() as db:
        row = db.execute("SELECT * FROM tasks WHERE id=?", (task_id,)).fetchone()
    if row is None:
        raise EcsError("InvalidTaskId.NotFound")
    operation = {"Processing": "Processing", "Finished": "Success", "Failed": "Failed"}
    view = task_view(row)
    del view["ResourceId"]
    return {
        **view,
        "RegionId": cloud.topology.region,
        "TaskProcess": _progress(row),
        "TotalCount": 1,
        "SuccessCount": int(row["status"] == "Finished"),
        "FailedCount": int(row["status"] == "Failed"),
        "OperationProgressSet": {
            "OperationProgress": [
                {
                    "OperationStatus": operation[row["status"]],
                    "ErrorCode": row["error_code"],
                    "ErrorMsg": row["error_message"],
                    "RelatedItemSet": {
                        "RelatedItem": [
                            {
                                "Name": RESOURCE_ITEM.get(row["action"], "ResourceId"),
                                "Value": row["resource_id"],
                            }
                        ]
                    },
                }
            ]
        },
    }
