"""Regional ESSDs (cloud_regional_disk_auto) and instance families: created without a zone,
attached from any zone of the region by the families that take them, force-attached away from
an instance in another zone, and ESSD Entry only on the u1 and e families."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models

from csi_disk_emulator.process import EmulatorInfo, running_emulator
from tests.integration.emulator.conftest import LATENCY_SCALE
from tests.integration.emulator.sdk import Ecs
from tests.waiting import wait_until

REGIONAL = "cloud_regional_disk_auto"
TOPOLOGY = {
    "region": "cn-hangzhou",
    "zones": ["cn-hangzhou-h", "cn-hangzhou-i", "cn-hangzhou-j"],
    "instances": [
        {"zone": "cn-hangzhou-h", "instance_type": "ecs.g8i.large"},
        {"zone": "cn-hangzhou-h", "instance_type": "ecs.g8i.large"},
        {"zone": "cn-hangzhou-h", "instance_type": "ecs.g7.large"},
        {"zone": "cn-hangzhou-i", "instance_type": "ecs.c8y.large"},
        {"zone": "cn-hangzhou-j", "instance_type": "ecs.u1-c1m2.large"},
    ],
}


@pytest.fixture(scope="module")
def families(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    state = tmp_path_factory.mktemp("ecs-families")
    topology = state / "topology.json"
    topology.write_text(json.dumps(TOPOLOGY), encoding="utf-8")
    with running_emulator(state / "ecs", latency_scale=LATENCY_SCALE, topology=topology) as info:
        yield info


@pytest.fixture
def ecs(families: EmulatorInfo) -> Ecs:
    return Ecs.for_account(families)


def _typed(info: EmulatorInfo, instance_type: str) -> list[str]:
    return [i.id for i in info.instances if i.instance_type == instance_type]


def _regional(ecs: Ecs, **params: Any) -> str:
    params.setdefault("Size", 20)
    disk_id = str(ecs.call("CreateDisk", DiskCategory=REGIONAL, **params)["DiskId"])
    ecs.wait_status(disk_id, "Available")
    return disk_id


def _code(err: Any) -> tuple[str, int]:
    return err.get_error_code(), err.get_http_status()


def _attachments(info: EmulatorInfo, disk_id: str) -> set[str]:
    rows = info.admin("GET", "/disks")["attachments"]
    return {r["instance_id"] for r in rows if r["disk_id"] == disk_id}


def test_regional_disk_needs_no_zone_and_shows_where_its_data_lives(ecs: Ecs) -> None:
    disk_id = _regional(ecs)
    disk = ecs.disk(disk_id)
    assert (disk["ZoneId"], disk["Category"], disk["RegionId"]) == ("", REGIONAL, "cn-hangzhou")
    assert "Placement" not in disk
    (placed,) = ecs.call(
        "DescribeDisks", DiskIds=json.dumps([disk_id]), AdditionalAttributess=["Placement"]
    )["Disks"]["Disk"]
    body = ecs.call(
        "DescribeDisks", DiskIds=json.dumps([disk_id]), AdditionalAttributess=["Placement"]
    )
    assert models.DescribeDisksResponseBody().from_map(body).to_map() == body
    zones = placed["Placement"]["ZoneIds"].split("\n")
    assert len(zones) == 2 and set(zones) <= set(ecs.info.zones)
    for size in (9, 65537):
        err = ecs.error("CreateDisk", DiskCategory=REGIONAL, Size=size)
        assert _code(err) == ("InvalidDiskSize.NotSupported", 400)


def test_regional_disk_attaches_in_any_zone_to_families_that_take_it(ecs: Ecs) -> None:
    disk_id = _regional(ecs)
    g8i_h = _typed(ecs.info, "ecs.g8i.large")[0]
    (c8y_i,) = _typed(ecs.info, "ecs.c8y.large")
    (g7_h,) = _typed(ecs.info, "ecs.g7.large")
    ecs.attach(disk_id, g8i_h)
    ecs.detach(disk_id, g8i_h)
    assert ecs.attach(disk_id, c8y_i)["Attachments"]["Attachment"][0]["InstanceId"] == c8y_i
    ecs.detach(disk_id, c8y_i)
    err = ecs.error("AttachDisk", DiskId=disk_id, InstanceId=g7_h)
    assert _code(err) == ("InvalidInstanceType.NotSupportDiskCategory", 403)


def test_force_attach_takes_a_regional_disk_from_another_zone(
    ecs: Ecs, families: EmulatorInfo
) -> None:
    disk_id = _regional(ecs)
    first, second = _typed(ecs.info, "ecs.g8i.large")
    (elsewhere,) = _typed(ecs.info, "ecs.c8y.large")
    ecs.attach(disk_id, first)
    err = ecs.error("AttachDisk", DiskId=disk_id, InstanceId=elsewhere)
    assert _code(err) == ("IncorrectDiskStatus", 403)
    # Only from an instance in another zone: in the same zone, a plain detach works.
    err = ecs.error("AttachDisk", DiskId=disk_id, InstanceId=second, Force=True)
    assert _code(err) == ("InvalidInstance.ZoneConflict", 403)
    assert _attachments(families, disk_id) == {first}
    ecs.call("AttachDisk", DiskId=disk_id, InstanceId=elsewhere, Force=True)
    disk = ecs.wait_status(disk_id, "In_use")
    assert [a["InstanceId"] for a in disk["Attachments"]["Attachment"]] == [elsewhere]
    assert _attachments(families, disk_id) == {elsewhere}
    root = Path(next(i.device_root for i in families.instances if i.id == first))
    link = f"nvme-Alibaba_Cloud_Elastic_Block_Storage_{disk['SerialNumber']}"
    assert not (root / "dev" / "disk" / "by-id" / link).exists()
    ecs.detach(disk_id, elsewhere)


def test_force_attach_is_only_for_regional_disks_without_multi_attach(ecs: Ecs) -> None:
    first = _typed(ecs.info, "ecs.g8i.large")[0]
    zonal = ecs.create_available("cn-hangzhou-h")
    err = ecs.error("AttachDisk", DiskId=zonal, InstanceId=first, Force=True)
    assert _code(err) == ("InvalidParameterForce.DiskCategoryNotSupported", 400)
    shared = _regional(ecs, MultiAttach="Enabled")
    err = ecs.error("AttachDisk", DiskId=shared, InstanceId=first, Force=True)
    assert _code(err) == ("InvalidParameterForce.MultiAttachDiskNotSupported", 400)


def test_regional_stock_is_the_regions(ecs: Ecs, families: EmulatorInfo) -> None:
    families.admin("POST", "/stock", {"zone": "cn-hangzhou", "category": REGIONAL, "count": 1})
    try:
        _regional(ecs)
        err = ecs.error("CreateDisk", DiskCategory=REGIONAL, Size=20)
        assert _code(err) == ("OperationDenied.NoStock", 403)
        assert ecs.create_available("cn-hangzhou-h", DiskCategory="cloud_essd")
    finally:
        families.admin("POST", "/stock", {"zone": "cn-hangzhou", "category": REGIONAL})


def test_essd_entry_attaches_only_to_the_u1_and_e_families(ecs: Ecs) -> None:
    (u1,) = _typed(ecs.info, "ecs.u1-c1m2.large")
    (g7,) = _typed(ecs.info, "ecs.g7.large")
    on_u1 = ecs.create_available("cn-hangzhou-j", DiskCategory="cloud_essd_entry")
    ecs.attach(on_u1, u1)
    ecs.detach(on_u1, u1)
    on_g7 = ecs.create_available("cn-hangzhou-h", DiskCategory="cloud_essd_entry")
    err = ecs.error("AttachDisk", DiskId=on_g7, InstanceId=g7)
    assert _code(err) == ("InvalidInstanceType.NotSupportDiskCategory", 403)


def test_snapshot_resize_and_restore_of_a_regional_disk(ecs: Ecs) -> None:
    disk_id = _regional(ecs)
    ecs.call("ResizeDisk", DiskId=disk_id, NewSize=40, Type="offline")
    assert ecs.disk(disk_id)["Size"] == 40
    snapshot_id = ecs.call("CreateSnapshot", DiskId=disk_id)["SnapshotId"]

    def accomplished() -> bool:
        found = ecs.call("DescribeSnapshots", SnapshotIds=json.dumps([snapshot_id]))
        return found["Snapshots"]["Snapshot"][0]["Status"] == "accomplished"

    wait_until(accomplished, "the regional disk's snapshot accomplished", 20)
    restored = _regional(ecs, SnapshotId=snapshot_id, Size=40)
    assert ecs.disk(restored)["Size"] == 40
