"""DescribeInstanceHistoryEvents over the system events the admin API records: ECS's
default of finished events only, its filters, paging and refusals, and the admin route's
own checks. Each test uses an emulator of its own, so it sees only its own events."""

from __future__ import annotations

import time
import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models

from csi_disk_emulator.process import EmulatorInfo, admin_error
from tests.integration.emulator.sdk import Ecs
from tests.integration.emulator.v2sdk import EcsV2

STAMP = "%Y-%m-%dT%H:%M:%SZ"


@pytest.fixture
def info(own_emulator) -> Iterator[EmulatorInfo]:  # type: ignore[no-untyped-def]
    with own_emulator() as emulator:
        yield emulator


def record(info: EmulatorInfo, instance: int = 0, **event: Any) -> str:
    event.setdefault("type", "SystemFailure.Reboot")
    path = f"/instances/{info.instances[instance].id}/events"
    return str(info.admin("POST", path, event)["event_id"])


def ids(v2: EcsV2, **query: Any) -> list[str]:
    body = v2.call("DescribeInstanceHistoryEvents", **query)
    return [e.event_id for e in body.instance_system_event_set.instance_system_event_type]


def stamp(offset_s: float) -> str:
    return time.strftime(STAMP, time.gmtime(time.time() + offset_s))


def test_finished_events_by_default_any_status_on_request(info: EmulatorInfo) -> None:
    v2 = EcsV2.for_account(info)
    assert ids(v2) == []
    executed = record(info, status="Executed", reason="ecs_alarm_center.vm.guest_os_oom:critical")
    scheduled = record(info, status="Scheduled", type="SystemMaintenance.Reboot")
    avoided = record(info, status="Avoided")
    assert ids(v2) == [executed, avoided]
    assert ids(v2, event_cycle_status="Scheduled") == [scheduled]
    assert ids(v2, instance_event_cycle_status=["Scheduled", "Executed"]) == [executed, scheduled]
    # InstanceEventCycleStatus.N wins over EventCycleStatus, as ECS documents.
    both = ids(v2, instance_event_cycle_status=["Avoided"], event_cycle_status="Scheduled")
    assert both == [avoided]

    body = v2.call("DescribeInstanceHistoryEvents", event_id=[executed])
    (event,) = body.instance_system_event_set.instance_system_event_type
    assert (event.instance_id, event.resource_type) == (info.instances[0].id, "instance")
    assert (event.event_type.name, event.event_type.code) == ("SystemFailure.Reboot", 65)
    assert (event.event_cycle_status.name, event.event_cycle_status.code) == ("Executed", 0)
    assert event.reason == "ecs_alarm_center.vm.guest_os_oom:critical"
    assert event.event_finish_time and event.event_publish_time <= event.event_finish_time
    (pending,) = v2.call(
        "DescribeInstanceHistoryEvents", event_id=[scheduled], event_cycle_status="Scheduled"
    ).instance_system_event_set.instance_system_event_type
    assert (pending.event_finish_time, pending.event_cycle_status.code) == ("", 24)


def test_filters_by_instance_type_time_and_impact(info: EmulatorInfo) -> None:
    v2 = EcsV2.for_account(info)
    first = record(info, instance=0, impact_level="100", disk_id="d-x", device="/dev/xvdb")
    second = record(info, instance=1, type="InstanceFailure.Reboot", not_before=time.time() + 3600)
    own, other = info.instances[0].id, info.instances[1].id
    assert ids(v2, instance_id=own) == [first]
    assert ids(v2, resource_id=[other]) == [second]
    assert ids(v2, resource_id=[other], instance_id=own) == [second]  # ResourceId.N wins
    assert ids(v2, resource_type="instance", resource_id=[own, other]) == [first, second]
    assert ids(v2, resource_type="ddh") == []
    assert ids(v2, event_type="InstanceFailure.Reboot") == [second]
    assert ids(v2, instance_event_type=["SystemFailure.Reboot", "InstanceFailure.Reboot"]) == [
        first,
        second,
    ]
    assert ids(v2, impact_level="100") == [first]
    window = models.DescribeInstanceHistoryEventsRequestEventPublishTime
    assert ids(v2, event_publish_time=window(start=stamp(-3600))) == [first, second]
    assert ids(v2, event_publish_time=window(end=stamp(-3600))) == []
    later = models.DescribeInstanceHistoryEventsRequestNotBefore(start=stamp(1800))
    assert ids(v2, not_before=later) == [second]
    tagged = [models.DescribeInstanceHistoryEventsRequestTag(key="k", value="v")]
    assert ids(v2, tag=tagged) == []  # emulated instances carry no tags

    body = v2.call("DescribeInstanceHistoryEvents", event_id=[first])
    extended = body.instance_system_event_set.instance_system_event_type[0].extended_attribute
    assert (extended.disk_id, extended.device) == ("d-x", "/dev/xvdb")


def test_paging(info: EmulatorInfo) -> None:
    v2 = EcsV2.for_account(info)
    made = [record(info) for _ in range(3)]
    first = v2.call("DescribeInstanceHistoryEvents", page_size=2)
    second = v2.call("DescribeInstanceHistoryEvents", page_size=2, page_number=2)
    assert (first.total_count, first.page_size, first.page_number) == (3, 2, 1)
    pages = [
        e.event_id
        for body in (first, second)
        for e in body.instance_system_event_set.instance_system_event_type
    ]
    assert pages == made
    token = v2.call("DescribeInstanceHistoryEvents", max_results=2)
    assert token.next_token
    rest = v2.call("DescribeInstanceHistoryEvents", max_results=2, next_token=token.next_token)
    assert [e.event_id for e in rest.instance_system_event_set.instance_system_event_type] == [
        made[2]
    ]


@pytest.mark.parametrize(
    ("fields", "code", "status"),
    [
        ({"event_cycle_status": "Done"}, "InvalidParameter", 400),
        ({"instance_event_type": ["Meteor.Strike"]}, "InvalidParameter", 400),
        ({"resource_type": "bucket"}, "InvalidParameter", 400),
        ({"event_id": [f"e-{n}" for n in range(101)]}, "EventIdLimitExceeded", 403),
        (
            {
                "event_publish_time": models.DescribeInstanceHistoryEventsRequestEventPublishTime(
                    start=stamp(0), end=stamp(-60)
                )
            },
            "InvalidParameter.TimeEndBeforeStart",
            403,
        ),
        (
            {"not_before": models.DescribeInstanceHistoryEventsRequestNotBefore(start="today")},
            "InvalidParameter",
            400,
        ),
    ],
)
def test_refusals(emulator: EmulatorInfo, fields: dict[str, Any], code: str, status: int) -> None:
    err = EcsV2.for_account(emulator).error("DescribeInstanceHistoryEvents", **fields)
    assert (err.code, err.status_code) == (code, status)


def test_v1_clients_see_the_same_events(info: EmulatorInfo) -> None:
    event_id = record(info, reason="ecs_alarm_center.vm.vmexit_exception_vm_hang:fatal")
    body = Ecs.for_account(info).call(
        "DescribeInstanceHistoryEvents",
        ResourceType="instance",
        ResourceIds=[info.instances[0].id],
        InstanceEventCycleStatuss=["Executed"],
        EventPublishTimeStart=stamp(-3 * 3600),
        PageSize=100,
    )
    (event,) = body["InstanceSystemEventSet"]["InstanceSystemEventType"]
    assert (event["EventId"], event["Reason"]) == (
        event_id,
        "ecs_alarm_center.vm.vmexit_exception_vm_hang:fatal",
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"type": "Meteor.Strike"}, 400),
        ({"type": "SystemFailure.Reboot", "status": "Done"}, 400),
        ({"type": "SystemFailure.Reboot", "reason": 5}, 400),
        ({"type": "SystemFailure.Reboot", "not_before": "soon"}, 400),
    ],
)
def test_admin_route_checks_its_fields(
    emulator: EmulatorInfo, body: dict[str, Any], status: int
) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        emulator.admin("POST", f"/instances/{emulator.instances[0].id}/events", body)
    assert caught.value.code == status
    assert admin_error(caught.value)["error"]


def test_admin_route_needs_a_known_instance(emulator: EmulatorInfo) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        emulator.admin("POST", "/instances/i-doesnotexist/events", {"type": "SystemFailure.Reboot"})
    assert caught.value.code == 404
    assert admin_error(caught.value)["code"] == "InvalidInstanceId.NotFound"
