"""DescribeTasks and DescribeTaskAttribute follow the task ModifyDiskSpec answers with:
Processing until the change lands (however long the disk is held), then Finished; Failed
when the disk is deleted first; filters, paging and errors as ECS documents them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from csi_disk_emulator.process import EmulatorInfo
from tests.integration.emulator.sdk import Ecs
from tests.integration.emulator.v2sdk import EcsV2


@pytest.fixture
def v2(emulator: EmulatorInfo) -> EcsV2:
    return EcsV2.for_account(emulator)


def _disk(v2: EcsV2) -> str:
    disk_id = v2.call(
        "CreateDisk",
        zone_id=v2.info.zones[0],
        disk_category="cloud_essd",
        performance_level="PL0",
        size=20,
    ).disk_id
    v2.wait_disk(disk_id, "Available")
    return str(disk_id)


def _task(v2: EcsV2, disk_id: str) -> str:
    return str(v2.call("ModifyDiskSpec", disk_id=disk_id, performance_level="PL1").task_id)


def _poll(check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def test_task_is_processing_while_the_disk_is_held_then_finished(v2: EcsV2) -> None:
    disk_id = _disk(v2)
    v2.info.admin("POST", f"/disks/{disk_id}/stuck", {"stuck": True})
    task_id = _task(v2, disk_id)
    assert task_id.startswith("t-")
    (task,) = v2.call("DescribeTasks", task_ids=task_id).task_set.task
    assert (task.task_status, task.finished_time, task.support_cancel) == (
        "Processing",
        "",
        "false",
    )
    attribute = v2.call("DescribeTaskAttribute", task_id=task_id)
    assert attribute.task_status == "Processing"
    assert attribute.task_process.endswith("%") and attribute.task_process != "100%"
    (progress,) = attribute.operation_progress_set.operation_progress
    assert progress.operation_status == "Processing"
    assert [(i.name, i.value) for i in progress.related_item_set.related_item] == [
        ("DiskId", disk_id)
    ]
    assert v2.disk(disk_id).performance_level == "PL0"

    v2.info.admin("POST", f"/disks/{disk_id}/stuck", {"stuck": False})
    finished = v2.wait_task(task_id)
    assert finished.task_status == "Finished" and finished.finished_time
    assert v2.disk(disk_id).performance_level == "PL1"
    v2.call("DeleteDisk", disk_id=disk_id)


def test_deleting_the_disk_first_fails_the_task(v2: EcsV2) -> None:
    disk_id = _disk(v2)
    v2.info.admin("POST", f"/disks/{disk_id}/stuck", {"stuck": True})
    task_id = _task(v2, disk_id)
    v2.call("DeleteDisk", disk_id=disk_id)
    task = v2.wait_task(task_id)
    assert task.task_status == "Failed"
    attribute = v2.call("DescribeTaskAttribute", task_id=task_id)
    assert (attribute.success_count, attribute.failed_count) == (0, 1)
    (progress,) = attribute.operation_progress_set.operation_progress
    assert (progress.operation_status, progress.error_code) == ("Failed", "InvalidDiskId.NotFound")


def test_filters_and_paging(v2: EcsV2) -> None:
    disks = [_disk(v2), _disk(v2)]
    v2.info.admin("POST", f"/disks/{disks[1]}/stuck", {"stuck": True})
    tasks = [_task(v2, d) for d in disks]
    v2.wait_task(tasks[0])

    def ids(**filters: Any) -> list[str]:
        found = v2.call("DescribeTasks", resource_ids=disks, **filters)
        return [t.task_id for t in found.task_set.task]

    assert ids() == tasks
    assert ids(task_ids=",".join(reversed(tasks))) == tasks
    assert ids(task_ids=tasks[1]) == [tasks[1]]
    assert ids(task_status="Finished") == [tasks[0]]
    assert ids(task_status="Processing") == [tasks[1]]
    assert ids(task_status="Waiting") == tasks  # ECS ignores statuses it does not filter on
    assert ids(task_action="ModifyDiskSpec") == tasks
    assert ids(task_action="ExportImage") == []
    assert ids(task_group_id="tg-unknown") == []
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    past = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(time.time() - 3600))
    assert ids(start_time=future) == []
    assert ids(end_time=past) == []
    assert ids(start_time=past, end_time=future) == tasks

    first = v2.call("DescribeTasks", resource_ids=disks, page_size=1)
    second = v2.call("DescribeTasks", resource_ids=disks, page_size=1, page_number=2)
    assert (first.total_count, first.page_size, second.page_number) == (2, 1, 2)
    assert [first.task_set.task[0].task_id, second.task_set.task[0].task_id] == tasks
    assert first.region_id == v2.info.region

    v2.info.admin("POST", f"/disks/{disks[1]}/stuck", {"stuck": False})
    v2.wait_task(tasks[1])
    for disk_id in disks:
        v2.call("DeleteDisk", disk_id=disk_id)


def test_dry_run_starts_no_task(v2: EcsV2) -> None:
    disk_id = _disk(v2)
    err = v2.error("ModifyDiskSpec", disk_id=disk_id, performance_level="PL1", dry_run=True)
    assert err.code == "DryRunOperation"
    assert v2.call("DescribeTasks", resource_ids=[disk_id]).task_set.task == []
    v2.call("DeleteDisk", disk_id=disk_id)


@pytest.mark.parametrize(
    ("fields", "code", "named"),
    [
        ({"task_action": "Resize"}, "InvalidParameter", "TaskAction"),
        ({"start_time": "yesterday"}, "InvalidParameter", "StartTime"),
        ({"task_ids": ",".join(f"t-{n}" for n in range(101))}, "InvalidParameter", "TaskIds"),
    ],
)
def test_describe_tasks_refuses_bad_values(
    v2: EcsV2, fields: dict[str, Any], code: str, named: str
) -> None:
    err = v2.error("DescribeTasks", **fields)
    assert (err.code, err.status_code) == (code, 400)
    assert named in str(err.message)


def test_describe_task_attribute_of_an_unknown_or_missing_task(v2: EcsV2, ecs: Ecs) -> None:
    err = v2.error("DescribeTaskAttribute", task_id="t-doesnotexist")
    assert (err.code, err.status_code) == ("InvalidTaskId.NotFound", 400)
    missing = ecs.error("DescribeTaskAttribute")
    assert missing.get_error_code() == "MissingParameter"
    assert "TaskId" in missing.get_error_msg()


def test_v1_clients_follow_tasks_too(ecs: Ecs) -> None:
    disk_id = ecs.create_available(DiskCategory="cloud_essd", PerformanceLevel="PL0", Size=20)
    task_id = ecs.call("ModifyDiskSpec", DiskId=disk_id, PerformanceLevel="PL1")["TaskId"]

    def finished() -> Any:
        tasks = ecs.call("DescribeTasks", TaskIds=task_id)["TaskSet"]["Task"]
        return tasks if tasks[0]["TaskStatus"] == "Finished" else None

    assert _poll(finished)[0]["ResourceId"] == disk_id
    ecs.call("DeleteDisk", DiskId=disk_id)
