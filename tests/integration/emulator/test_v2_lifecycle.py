"""A disk's whole life through Alibaba's V2 Python SDK, V3-signed, with the account key and
with RAM role credentials from the metadata service: every call answers as ECS documents and
every answer parses into the SDK's models field for field."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from alibabacloud_ecs20140526 import models

from csi_disk_emulator.process import EmulatorInfo
from tests.integration.emulator.v2sdk import EcsV2, role_credentials

ALL_EVENT_STATUSES = [
    "Scheduled",
    "Avoided",
    "Executing",
    "Executed",
    "Canceled",
    "Failed",
    "Inquiring",
]
PANIC = "ecs_alarm_center.vm.guest_os_kernel_panic:critical"


@pytest.fixture(params=["access-key", "role-credentials"])
def v2(request: pytest.FixtureRequest, emulator: EmulatorInfo) -> EcsV2:
    if request.param == "access-key":
        return EcsV2.for_account(emulator)
    return EcsV2.for_sts(emulator, role_credentials(emulator))


def _tags(v2: EcsV2, disk_id: str) -> set[tuple[str, str]]:
    """The disk's tags as ListTagResources and DescribeDisks show them (they must agree)."""
    listed = v2.call("ListTagResources", resource_type="disk", resource_id=[disk_id])
    pairs = {(t.tag_key, t.tag_value) for t in listed.tag_resources.tag_resource}
    assert {t.resource_id for t in listed.tag_resources.tag_resource} <= {disk_id}
    described = {(t.tag_key, t.tag_value) for t in v2.disk(disk_id).tags.tag}
    assert pairs == described
    return pairs


def test_a_disk_from_creation_to_deletion(v2: EcsV2, emulator: EmulatorInfo) -> None:
    inst = emulator.instances[0]
    name = f"v2-life-{uuid.uuid4().hex[:8]}"
    create = {
        "zone_id": inst.zone,
        "disk_category": "cloud_essd",
        "performance_level": "PL0",
        "size": 20,
        "disk_name": name,
        "client_token": name,
        "tag": [models.CreateDiskRequestTag(key="team", value="storage")],
    }
    disk_id = v2.call("CreateDisk", **create).disk_id
    disk = v2.wait_disk(disk_id, "Available")
    assert (disk.category, disk.performance_level, disk.size) == ("cloud_essd", "PL0", 20)

    v2.call("AttachDisk", instance_id=inst.id, disk_id=disk_id)
    assert v2.wait_disk(disk_id, "In_use").instance_id == inst.id

    task_id = v2.call("ModifyDiskSpec", disk_id=disk_id, performance_level="PL1").task_id
    task = v2.wait_task(task_id)
    assert (task.task_status, task.task_action, task.resource_id) == (
        "Finished",
        "ModifyDiskSpec",
        disk_id,
    )
    attribute = v2.call("DescribeTaskAttribute", task_id=task_id)
    assert (attribute.task_status, attribute.task_process) == ("Finished", "100%")
    assert (attribute.success_count, attribute.failed_count) == (1, 0)
    assert v2.disk(disk_id).performance_level == "PL1"

    v2.call(
        "TagResources",
        resource_type="disk",
        resource_id=[disk_id],
        tag=[models.TagResourcesRequestTag(key="env", value="prod")],
    )
    assert _tags(v2, disk_id) == {("team", "storage"), ("env", "prod")}
    v2.call("UntagResources", resource_type="disk", resource_id=[disk_id], tag_key=["env"])
    assert _tags(v2, disk_id) == {("team", "storage")}

    v2.call("ResizeDisk", disk_id=disk_id, new_size=30, type="online")
    assert v2.disk(disk_id).size == 30

    snapshot_id = v2.call("CreateSnapshot", disk_id=disk_id, snapshot_name="v2-life").snapshot_id
    snapshot = v2.wait_snapshot(snapshot_id)
    assert (snapshot.source_disk_id, snapshot.source_disk_size) == (disk_id, "30")
    v2.call("DeleteSnapshot", snapshot_id=snapshot_id)
    gone = v2.call("DescribeSnapshots", snapshot_ids=json.dumps([snapshot_id]))
    assert gone.snapshots.snapshot == []

    v2.call("DetachDisk", instance_id=inst.id, disk_id=disk_id)
    assert v2.wait_disk(disk_id, "Available").instance_id == ""
    # After a detach a client looks for events that explain one that hangs (the upstream
    # driver asks this very question); the emulator records one as a guest panic would.
    event_id = emulator.admin(
        "POST",
        f"/instances/{inst.id}/events",
        {"type": "SystemFailure.Reboot", "status": "Executed", "reason": PANIC},
    )["event_id"]
    events = v2.call(
        "DescribeInstanceHistoryEvents",
        resource_type="instance",
        resource_id=[inst.id],
        instance_event_cycle_status=ALL_EVENT_STATUSES,
        event_publish_time=models.DescribeInstanceHistoryEventsRequestEventPublishTime(
            start=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3 * 3600))
        ),
        page_size=100,
    ).instance_system_event_set.instance_system_event_type
    ours = [e for e in events if e.event_id == event_id]
    assert len(ours) == 1 and all(e.instance_id == inst.id for e in events)
    assert (ours[0].reason, ours[0].event_type.name, ours[0].event_cycle_status.name) == (
        PANIC,
        "SystemFailure.Reboot",
        "Executed",
    )

    v2.call("DeleteDisk", disk_id=disk_id)
    assert v2.call("DescribeDisks", disk_ids=json.dumps([disk_id])).disks.disk == []
    # ECS answers a repeated ClientToken with the first call's result and leaves the region
    # as it is: the deleted disk's id, and no new disk.
    assert v2.call("CreateDisk", **create).disk_id == disk_id
    assert v2.call("DescribeDisks", disk_ids=json.dumps([disk_id])).disks.disk == []
    assert v2.call("DescribeDisks", disk_name=name).disks.disk == []
