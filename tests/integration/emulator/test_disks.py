"""Disk and instance actions through the real SDK: rules, transitions, errors, paging."""

from __future__ import annotations

import json
import uuid

import pytest
from alibabacloud_ecs20140526 import models

from csi_disk_emulator.process import EmulatorInfo
from tests.integration.emulator.sdk import Ecs


def _code(err: object) -> tuple[str, int]:
    return err.get_error_code(), err.get_http_status()  # type: ignore[attr-defined]


def test_disk_goes_creating_available_attaching_in_use_detaching_available(ecs: Ecs) -> None:
    inst = ecs.info.instances[0]
    disk_id = ecs.create(inst.zone, Size=20)
    assert disk_id.startswith("d-") and len(disk_id) == 22
    ecs.wait_status(disk_id, "Available")
    ecs.call("AttachDisk", DiskId=disk_id, InstanceId=inst.id)
    assert ecs.disk(disk_id)["Status"] in ("Attaching", "In_use")
    disk = ecs.wait_status(disk_id, "In_use")
    assert disk["InstanceId"] == inst.id
    assert disk["SerialNumber"] == disk_id[2:]
    assert [a["InstanceId"] for a in disk["Attachments"]["Attachment"]] == [inst.id]
    assert disk["Device"].startswith("/dev/xvd")
    on_instance = ecs.call("DescribeDisks", InstanceId=inst.id)["Disks"]["Disk"]
    assert disk_id in [d["DiskId"] for d in on_instance]
    ecs.call("DetachDisk", DiskId=disk_id, InstanceId=inst.id)
    disk = ecs.wait_status(disk_id, "Available")
    assert disk["Attachments"]["Attachment"] == [] and disk["InstanceId"] == ""
    ecs.call("DeleteDisk", DiskId=disk_id)
    assert ecs.call("DescribeDisks", DiskIds=json.dumps([disk_id]))["Disks"]["Disk"] == []


def test_create_records_every_attribute(ecs: Ecs) -> None:
    disk_id = ecs.create_available(
        DiskCategory="cloud_essd",
        PerformanceLevel="PL0",
        Size=1,
        DiskName="data-1",
        Description="why not",
        Encrypted=True,
        KMSKeyId="key-1",
        ResourceGroupId="rg-1",
        MultiAttach="Enabled",
        Tags=[{"Key": "team", "Value": "storage"}],
    )
    disk = ecs.disk(disk_id)
    assert (disk["Category"], disk["PerformanceLevel"], disk["Size"]) == ("cloud_essd", "PL0", 1)
    assert (disk["DiskName"], disk["Description"]) == ("data-1", "why not")
    assert (disk["Encrypted"], disk["KMSKeyId"], disk["ResourceGroupId"]) == (True, "key-1", "rg-1")
    assert disk["MultiAttach"] == "Enabled"
    assert disk["Tags"]["Tag"] == [{"TagKey": "team", "TagValue": "storage"}]
    assert disk["Type"] == "data" and disk["Portable"] is True


@pytest.mark.parametrize(
    ("category", "level", "too_small", "smallest"),
    [
        ("cloud_efficiency", None, 19, 20),
        ("cloud_ssd", None, 19, 20),
        ("cloud_essd", "PL1", 19, 20),
        ("cloud_essd", "PL2", 460, 461),
        ("cloud_essd", "PL3", 1260, 1261),
        ("cloud_essd_entry", None, 9, 10),
        ("cloud_auto", None, 0, 1),
    ],
)
def test_size_limits_per_category_and_level(
    ecs: Ecs, category: str, level: str | None, too_small: int, smallest: int
) -> None:
    extra = {"PerformanceLevel": level} if level else {}
    zone = ecs.info.zones[0]
    if too_small > 0:
        err = ecs.error("CreateDisk", ZoneId=zone, DiskCategory=category, Size=too_small, **extra)
        assert _code(err) == ("InvalidDiskSize.NotSupported", 400)
    assert ecs.create(zone, DiskCategory=category, Size=smallest, **extra).startswith("d-")
    too_big = 32769 if category in ("cloud_efficiency", "cloud_ssd", "cloud_essd_entry") else 65537
    err = ecs.error("CreateDisk", ZoneId=zone, DiskCategory=category, Size=too_big, **extra)
    assert _code(err) == ("InvalidDiskSize.NotSupported", 400)


def test_zone_without_the_category_refuses_it(ecs: Ecs) -> None:
    nvme_zone = next(i.zone for i in ecs.info.instances if i.bus == "nvme")
    err = ecs.error("CreateDisk", ZoneId=nvme_zone, DiskCategory="cloud_ssd", Size=20)
    assert _code(err) == ("InvalidDataDiskCategory.NotSupported", 403)
    assert _code(ecs.error("CreateDisk", ZoneId=nvme_zone, DiskCategory="bogus", Size=20)) == (
        "InvalidDiskCategory.ValueNotSupported",
        400,
    )
    assert (
        _code(ecs.error("CreateDisk", ZoneId="cn-nowhere-x", DiskCategory="cloud_essd", Size=20))[0]
        == "InvalidZoneId.NotFound"
    )


def test_instance_family_without_the_category_refuses_attach(ecs: Ecs) -> None:
    nvme = next(i for i in ecs.info.instances if i.bus == "nvme")
    disk_id = ecs.create_available(nvme.zone, DiskCategory="cloud_efficiency", Size=20)
    err = ecs.error("AttachDisk", DiskId=disk_id, InstanceId=nvme.id)
    assert _code(err) == ("InvalidInstanceType.NotSupportDiskCategory", 403)


def test_attach_across_zones_is_refused(ecs: Ecs) -> None:
    disk_id = ecs.create_available(ecs.info.zones[0])
    other = ecs.info.instances_in(ecs.info.zones[1])[0]
    assert _code(ecs.error("AttachDisk", DiskId=disk_id, InstanceId=other.id)) == (
        "ResourcesNotInSameZone",
        403,
    )


def test_status_errors(ecs: Ecs, emulator: EmulatorInfo) -> None:
    inst, other = ecs.info.instances_in(ecs.info.zones[0])[:2]
    emulator.admin("POST", "/sticky", {"actions": ["CreateDisk"]})
    try:
        disk_id = ecs.create(inst.zone)
    finally:
        emulator.admin("POST", "/sticky", {"actions": []})
    assert ecs.disk(disk_id)["Status"] == "Creating"
    assert _code(ecs.error("DeleteDisk", DiskId=disk_id)) == (
        "IncorrectDiskStatus.Initializing",
        403,
    )
    emulator.admin("POST", f"/disks/{disk_id}/stuck", {"stuck": False})
    ecs.wait_status(disk_id, "Available")
    ecs.attach(disk_id, inst.id)
    assert _code(ecs.error("DeleteDisk", DiskId=disk_id)) == ("IncorrectDiskStatus", 403)
    assert _code(ecs.error("AttachDisk", DiskId=disk_id, InstanceId=other.id)) == (
        "IncorrectDiskStatus",
        403,
    )
    assert _code(ecs.error("DetachDisk", DiskId=disk_id, InstanceId=other.id)) == (
        "DependencyViolation",
        403,
    )
    ecs.detach(disk_id, inst.id)
    assert _code(ecs.error("DeleteDisk", DiskId="d-00000000000000000000")) == (
        "InvalidDiskId.NotFound",
        404,
    )
    assert _code(ecs.error("AttachDisk", DiskId=disk_id, InstanceId="i-00000000000000000000")) == (
        "InvalidInstanceId.NotFound",
        404,
    )
    assert _code(
        ecs.error(
            "CreateDisk",
            ZoneId=inst.zone,
            DiskCategory="cloud_essd",
            Size=20,
            SnapshotId="s-00000000000000000000",
        )
    ) == ("InvalidSnapshotId.NotFound", 404)


def test_one_attach_and_one_detach_in_flight_per_instance(ecs: Ecs, emulator: EmulatorInfo) -> None:
    inst = ecs.info.instances_in(ecs.info.zones[1])[0]
    first, second = (ecs.create_available(inst.zone) for _ in range(2))
    emulator.admin("POST", f"/disks/{first}/stuck", {"stuck": True})
    ecs.call("AttachDisk", DiskId=first, InstanceId=inst.id)
    err = ecs.error("AttachDisk", DiskId=second, InstanceId=inst.id)
    assert _code(err) == ("OperationConflict.DisksAttachingParallellyExceed", 403)
    emulator.admin("POST", f"/disks/{first}/stuck", {"stuck": False})
    ecs.wait_status(first, "In_use")
    ecs.attach(second, inst.id)
    emulator.admin("POST", f"/disks/{first}/stuck", {"stuck": True})
    ecs.call("DetachDisk", DiskId=first, InstanceId=inst.id)
    assert ecs.disk(first)["Status"] == "Detaching"
    assert _code(ecs.error("DetachDisk", DiskId=second, InstanceId=inst.id)) == (
        "InvalidOperation.Conflict",
        403,
    )
    emulator.admin("POST", f"/disks/{first}/stuck", {"stuck": False})
    ecs.wait_status(first, "Available")
    ecs.detach(second, inst.id)


def test_instance_configured_for_concurrency_takes_parallel_attaches(
    ecs: Ecs, emulator: EmulatorInfo
) -> None:
    inst = ecs.info.instances_in(ecs.info.zones[1])[1]
    emulator.admin("POST", f"/instances/{inst.id}/concurrency", {"attach": 32, "detach": 5})
    disks = [ecs.create_available(inst.zone) for _ in range(3)]
    for disk_id in disks:
        emulator.admin("POST", f"/disks/{disk_id}/stuck", {"stuck": True})
        ecs.call("AttachDisk", DiskId=disk_id, InstanceId=inst.id)
    assert {ecs.disk(d)["Status"] for d in disks} == {"Attaching"}
    for disk_id in disks:
        emulator.admin("POST", f"/disks/{disk_id}/stuck", {"stuck": False})
    for disk_id in disks:
        ecs.wait_status(disk_id, "In_use")
        ecs.call("DetachDisk", DiskId=disk_id, InstanceId=inst.id)
    for disk_id in disks:
        ecs.wait_status(disk_id, "Available")


def test_instance_disk_limit(ecs: Ecs) -> None:
    inst = ecs.info.instances_in(ecs.info.zones[2])[1]
    types = ecs.call("DescribeInstanceTypes", InstanceTypess=[inst.instance_type])
    quantity = types["InstanceTypes"]["InstanceType"][0]["DiskQuantity"]
    attached = []
    for _ in range(quantity):
        disk_id = ecs.create_available(inst.zone, Size=1, DiskCategory="cloud_auto")
        ecs.attach(disk_id, inst.id)
        attached.append(disk_id)
    extra = ecs.create_available(inst.zone, Size=1, DiskCategory="cloud_auto")
    assert _code(ecs.error("AttachDisk", DiskId=extra, InstanceId=inst.id)) == (
        "InstanceDiskLimitExceeded",
        403,
    )
    for disk_id in attached:
        ecs.detach(disk_id, inst.id)


def test_client_token_idempotency(ecs: Ecs) -> None:
    token = f"n:{uuid.uuid4()}"
    zone = ecs.info.zones[0]
    first = ecs.create(zone, ClientToken=token, Size=30)
    assert ecs.create(zone, ClientToken=token, Size=30) == first
    err = ecs.error(
        "CreateDisk", ZoneId=zone, DiskCategory="cloud_essd", Size=31, ClientToken=token
    )
    assert err.get_error_code() == "IdempotentParameterMismatch"
    assert ecs.create(zone, ClientToken=f"n:{uuid.uuid4()}", Size=30) != first


def test_describe_disks_filters_and_unknown_ids(ecs: Ecs) -> None:
    tag = str(uuid.uuid4())
    zone = ecs.info.zones[1]
    made = [ecs.create_available(zone, Tags=[{"Key": "batch", "Value": tag}]) for _ in range(3)]
    unknown = "d-zzzzzzzzzzzzzzzzzzzz"
    found = ecs.call("DescribeDisks", DiskIds=json.dumps([*made, unknown]))["Disks"]["Disk"]
    assert sorted(d["DiskId"] for d in found) == sorted(made)
    assert ecs.call("DescribeDisks", DiskIds=json.dumps([unknown]))["Disks"]["Disk"] == []
    by_tag = ecs.call("DescribeDisks", Tags=[{"Key": "batch", "Value": tag}])["Disks"]["Disk"]
    assert sorted(d["DiskId"] for d in by_tag) == sorted(made)
    assert (
        ecs.call("DescribeDisks", Tags=[{"Key": "batch", "Value": "other"}])["Disks"]["Disk"] == []
    )
    in_zone = ecs.call("DescribeDisks", DiskIds=json.dumps(made), ZoneId=ecs.info.zones[0])
    assert in_zone["Disks"]["Disk"] == []
    available = ecs.call(
        "DescribeDisks", DiskIds=json.dumps(made), Status="Available", Category="cloud_essd"
    )
    assert len(available["Disks"]["Disk"]) == 3
    too_many = json.dumps([f"d-{i:020d}" for i in range(101)])
    assert ecs.error("DescribeDisks", DiskIds=too_many).get_error_code() == "InvalidParameter"
    assert (
        ecs.error("DescribeDisks", DiskIds="not json").get_error_code()
        == "InvalidDiskIds.Malformed"
    )


def test_pagination_by_page_number_and_by_next_token(ecs: Ecs) -> None:
    tag = str(uuid.uuid4())
    made = [ecs.create(ecs.info.zones[0], Tags=[{"Key": "page", "Value": tag}]) for _ in range(7)]
    tags = [{"Key": "page", "Value": tag}]
    pages = []
    for number in (1, 2, 3):
        body = ecs.call("DescribeDisks", Tags=tags, PageSize=3, PageNumber=number)
        assert body["TotalCount"] == 7
        pages.append([d["DiskId"] for d in body["Disks"]["Disk"]])
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [d for page in pages for d in page] == made
    seen: list[str] = []
    token = ""
    for _ in range(100):  # a paging bug must not loop forever
        params = {"Tags": tags, "MaxResults": 2}
        if token:
            params["NextToken"] = token
        body = ecs.call("DescribeDisks", **params)
        seen += [d["DiskId"] for d in body["Disks"]["Disk"]]
        token = body["NextToken"]
        if not token:
            break
    else:
        pytest.fail("the listing never ended")
    assert seen == made


def test_describe_instances_zones_types_and_resources(ecs: Ecs) -> None:
    info = ecs.info
    body = ecs.call("DescribeInstances", InstanceIds=json.dumps([i.id for i in info.instances[:2]]))
    assert [i["InstanceId"] for i in body["Instances"]["Instance"]] == [
        i.id for i in info.instances[:2]
    ]
    in_zone = ecs.call("DescribeInstances", ZoneId=info.zones[2], Status="Running")
    assert {i["InstanceId"] for i in in_zone["Instances"]["Instance"]} == {
        i.id for i in info.instances_in(info.zones[2])
    }
    types = ecs.call("DescribeInstanceTypes", InstanceTypess=["ecs.g8i.large"])
    assert types["InstanceTypes"]["InstanceType"][0]["NvmeSupport"] == "required"
    resources = ecs.call(
        "DescribeAvailableResource",
        DestinationResource="DataDisk",
        ResourceType="disk",
        ZoneId=info.zones[2],
    )
    zone = resources["AvailableZones"]["AvailableZone"][0]
    values = [
        r["Value"]
        for r in zone["AvailableResources"]["AvailableResource"][0]["SupportedResources"][
            "SupportedResource"
        ]
    ]
    assert "cloud_essd" in values and "cloud_ssd" not in values


@pytest.mark.parametrize(
    ("action", "model", "params"),
    [
        ("DescribeDisks", models.DescribeDisksResponseBody, {}),
        ("DescribeInstances", models.DescribeInstancesResponseBody, {}),
        ("DescribeZones", models.DescribeZonesResponseBody, {}),
        ("DescribeInstanceTypes", models.DescribeInstanceTypesResponseBody, {}),
        (
            "DescribeAvailableResource",
            models.DescribeAvailableResourceResponseBody,
            {"DestinationResource": "DataDisk", "ResourceType": "disk"},
        ),
        (
            "DescribeAvailableResource",
            models.DescribeAvailableResourceResponseBody,
            {"DestinationResource": "DataDisk", "ResourceType": "disk", "Scope": "region"},
        ),
        (
            "DescribeDisks",
            models.DescribeDisksResponseBody,
            {"AdditionalAttributess": ["Placement"]},
        ),
        ("DescribeDisks", models.DescribeDisksResponseBody, {"MaxResults": 1}),
    ],
)
def test_response_shapes_round_trip_through_alibaba_models(
    ecs: Ecs, action: str, model: type, params: dict
) -> None:  # type: ignore[type-arg]
    inst = ecs.info.instances[0]
    disk_id = ecs.create_available(inst.zone, Tags=[{"Key": "k", "Value": "v"}])
    ecs.attach(disk_id, inst.id)
    try:
        body = ecs.call(action, **params)
        assert model().from_map(body).to_map() == body
    finally:
        ecs.detach(disk_id, inst.id)


def test_create_and_error_shapes_round_trip(ecs: Ecs) -> None:
    body = ecs.call("CreateDisk", ZoneId=ecs.info.zones[0], DiskCategory="cloud_essd", Size=20)
    assert models.CreateDiskResponseBody().from_map(body).to_map() == body
    attach_body = ecs.call("DescribeZones")
    assert models.DescribeZonesResponseBody().from_map(attach_body).to_map() == attach_body
