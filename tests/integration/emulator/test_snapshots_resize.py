"""Snapshots, restores, resizes and spec changes through the real SDK against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models

from csi_disk_emulator.blockdev import file_size_cap
from csi_disk_emulator.process import running_emulator
from tests.integration.emulator.conftest import LATENCY_SCALE
from tests.integration.emulator.sdk import Ecs

GIB = 1024**3


def _code(err: object) -> tuple[str, int]:
    return err.get_error_code(), err.get_http_status()  # type: ignore[attr-defined]


def _snapshot(ecs: Ecs, snapshot_id: str) -> dict[str, Any]:
    found = ecs.call("DescribeSnapshots", SnapshotIds=json.dumps([snapshot_id]))
    items = found["Snapshots"]["Snapshot"]
    assert len(items) == 1, found
    return dict(items[0])


def _wait_snapshot(ecs: Ecs, snapshot_id: str, timeout: float = 20) -> dict[str, Any]:
    """Poll until accomplished (a wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        snap = _snapshot(ecs, snapshot_id)
        if snap["Status"] == "accomplished" or time.monotonic() > deadline:
            assert snap["Status"] == "accomplished", snap
            return snap
        time.sleep(0.01)


def _wait_disk(ecs: Ecs, disk_id: str, key: str, value: Any, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        disk = ecs.disk(disk_id)
        if disk[key] == value or time.monotonic() > deadline:
            assert disk[key] == value, disk
            return disk
        time.sleep(0.01)


def _disk_file(ecs: Ecs, disk_id: str) -> Path:
    return ecs.info.state_dir / "disks" / f"{disk_id}.img"


@pytest.fixture
def sticky(ecs: Ecs) -> Iterator[Any]:
    """``sticky(["CreateSnapshot"])``: transitions of those actions hang until unstuck."""

    def set_actions(actions: list[str]) -> None:
        ecs.info.admin("POST", "/sticky", {"actions": actions})

    yield set_actions
    set_actions([])


# --- snapshots -------------------------------------------------------------------------


def test_snapshot_progresses_to_accomplished_with_ecs_fields(ecs: Ecs) -> None:
    disk_id = ecs.create_available(Size=40, DiskCategory="cloud_essd", PerformanceLevel="PL1")
    body = ecs.call(
        "CreateSnapshot",
        DiskId=disk_id,
        SnapshotName="nightly-1",
        Description="before upgrade",
        RetentionDays=7,
        Tags=[{"Key": "team", "Value": "storage"}],
    )
    assert models.CreateSnapshotResponseBody().from_map(body).to_map() == body
    snapshot_id = body["SnapshotId"]
    assert snapshot_id.startswith("s-") and len(snapshot_id) == 22
    snap = _wait_snapshot(ecs, snapshot_id)
    assert (snap["SourceDiskId"], snap["SourceDiskSize"]) == (disk_id, "40")
    assert (snap["SnapshotName"], snap["Description"]) == ("nightly-1", "before upgrade")
    assert (snap["Progress"], snap["RetentionDays"], snap["Usage"]) == ("100%", 7, "none")
    assert snap["Tags"]["Tag"] == [{"TagKey": "team", "TagValue": "storage"}]
    assert snap["CreationTime"].endswith("Z")
    listing = ecs.call("DescribeSnapshots", DiskId=disk_id)
    assert models.DescribeSnapshotsResponseBody().from_map(listing).to_map() == listing
    assert [s["SnapshotId"] for s in listing["Snapshots"]["Snapshot"]] == [snapshot_id]


def test_snapshot_client_token_returns_the_same_snapshot_or_a_mismatch(ecs: Ecs) -> None:
    disk_id = ecs.create_available()
    token = uuid.uuid4().hex
    first = ecs.call("CreateSnapshot", DiskId=disk_id, SnapshotName="snap-a", ClientToken=token)
    again = ecs.call("CreateSnapshot", DiskId=disk_id, SnapshotName="snap-a", ClientToken=token)
    assert first["SnapshotId"] == again["SnapshotId"]
    err = ecs.error("CreateSnapshot", DiskId=disk_id, SnapshotName="snap-b", ClientToken=token)
    assert _code(err) == ("IdempotentParameterMismatch", 400)
    assert ecs.call("DescribeSnapshots", DiskId=disk_id)["TotalCount"] == 1


def test_snapshot_errors_name_their_cause(ecs: Ecs, sticky: Any) -> None:
    assert _code(ecs.error("CreateSnapshot", DiskId="d-nosuchdisk000000000")) == (
        "InvalidDiskId.NotFound",
        404,
    )
    assert _code(ecs.error("DeleteSnapshot", SnapshotId="s-nosuchsnap000000000")) == (
        "InvalidSnapshotId.NotFound",
        404,
    )
    err = ecs.error("DescribeSnapshots", SnapshotIds="not json")
    assert _code(err) == ("InvalidSnapshotIds.Malformed", 400)
    sticky(["CreateDisk"])
    creating = ecs.create()
    err = ecs.error("CreateSnapshot", DiskId=creating)
    assert _code(err) == ("IncorrectDiskStatus", 403)
    ecs.info.admin("POST", f"/disks/{creating}/stuck", {"stuck": False})


def test_snapshot_quota_per_disk(ecs: Ecs) -> None:
    disk_id = ecs.create_available()
    ecs.info.admin("POST", "/snapshots/quota", {"per_disk": 2})
    try:
        for _ in range(2):
            ecs.call("CreateSnapshot", DiskId=disk_id)
        assert _code(ecs.error("CreateSnapshot", DiskId=disk_id)) == ("QuotaExceed.Snapshot", 403)
        other = ecs.create_available()
        ecs.call("CreateSnapshot", DiskId=other)  # the quota counts per disk
    finally:
        ecs.info.admin("POST", "/snapshots/quota", {"per_disk": 256})


def test_describe_snapshots_filters_and_pages_both_ways(ecs: Ecs) -> None:
    disk_id = ecs.create_available()
    tag = uuid.uuid4().hex
    ids = [
        ecs.call("CreateSnapshot", DiskId=disk_id, Tags=[{"Key": "batch", "Value": tag}])[
            "SnapshotId"
        ]
        for _ in range(5)
    ]
    tagged = ecs.call("DescribeSnapshots", Tags=[{"Key": "batch", "Value": tag}], PageSize=100)
    assert [s["SnapshotId"] for s in tagged["Snapshots"]["Snapshot"]] == ids
    by_id = ecs.call("DescribeSnapshots", SnapshotIds=json.dumps([*ids[1:3], "s-unknown"]))
    assert sorted(s["SnapshotId"] for s in by_id["Snapshots"]["Snapshot"]) == sorted(ids[1:3])
    seen: list[str] = []
    token = ""
    for _ in range(100):  # a paging bug must not loop forever
        params: dict[str, Any] = {"DiskId": disk_id, "MaxResults": 2}
        if token:
            params["NextToken"] = token
        page = ecs.call("DescribeSnapshots", **params)
        assert models.DescribeSnapshotsResponseBody().from_map(page).to_map() == page
        seen += [s["SnapshotId"] for s in page["Snapshots"]["Snapshot"]]
        token = page["NextToken"]
        if not token:
            break
    else:
        pytest.fail("the listing never ended")
    assert seen == ids
    second = ecs.call("DescribeSnapshots", DiskId=disk_id, PageNumber=2, PageSize=2)
    assert [s["SnapshotId"] for s in second["Snapshots"]["Snapshot"]] == ids[2:4]
    assert second["TotalCount"] == 5


def test_restore_needs_an_accomplished_snapshot_and_enough_size(ecs: Ecs, sticky: Any) -> None:
    disk_id = ecs.create_available(Size=30)
    sticky(["CreateSnapshot"])
    snapshot_id = ecs.call("CreateSnapshot", DiskId=disk_id)["SnapshotId"]
    assert _snapshot(ecs, snapshot_id)["Status"] == "progressing"
    err = ecs.error("CreateDisk", ZoneId=ecs.info.zones[0], DiskCategory="cloud_essd",
                    SnapshotId=snapshot_id, Size=40)  # fmt: skip
    assert _code(err) == ("InvalidSnapshot.NotReady", 403)
    ecs.info.admin("POST", f"/snapshots/{snapshot_id}/stuck", {"stuck": False})
    _wait_snapshot(ecs, snapshot_id)
    err = ecs.error("CreateDisk", ZoneId=ecs.info.zones[0], DiskCategory="cloud_essd",
                    SnapshotId=snapshot_id, Size=20)  # fmt: skip
    assert _code(err) == ("InvalidDiskSize.TooSmall", 403)
    sized = ecs.call("CreateDisk", ZoneId=ecs.info.zones[0], DiskCategory="cloud_essd",
                     SnapshotId=snapshot_id)["DiskId"]  # fmt: skip
    ecs.wait_status(sized, "Available")  # no Size: the snapshot's
    assert ecs.disk(sized)["Size"] == 30 and ecs.disk(sized)["SourceSnapshotId"] == snapshot_id
    err = ecs.error("CreateDisk", ZoneId=ecs.info.zones[0], SnapshotId="s-nosuchsnap000000000",
                    DiskCategory="cloud_essd", Size=40)  # fmt: skip
    assert _code(err) == ("InvalidSnapshotId.NotFound", 404)


def test_restore_copies_data_and_keeps_a_100_gib_disk_sparse(ecs: Ecs) -> None:
    disk_id = ecs.create_available(Size=100)
    payload = os.urandom(1024 * 1024)
    with open(_disk_file(ecs, disk_id), "r+b") as f:
        f.seek(0)
        f.write(b"head" * 1024)
        f.seek(70 * GIB)
        f.write(payload)
    snapshot_id = ecs.call("CreateSnapshot", DiskId=disk_id)["SnapshotId"]
    snap_file = ecs.info.state_dir / "snapshots" / f"{snapshot_id}.img"
    _wait_snapshot(ecs, snapshot_id)
    # The source changes after the snapshot: the snapshot keeps the earlier data.
    with open(_disk_file(ecs, disk_id), "r+b") as f:
        f.write(b"late" * 1024)
    restored = ecs.create_available(SnapshotId=snapshot_id, Size=120)
    assert ecs.disk(restored)["Size"] == 120
    path = _disk_file(ecs, restored)
    assert path.stat().st_size == 120 * GIB
    with open(path, "rb") as f:
        assert f.read(4096) == b"head" * 1024
        f.seek(70 * GIB)
        assert f.read(len(payload)) == payload
        f.seek(110 * GIB)
        assert f.read(4096) == bytes(4096)
    # A few MiB of data in 100 GiB: each copy allocates about what was written.
    for copy in (snap_file, path):
        assert copy.stat().st_blocks * 512 < 16 * 1024 * 1024, copy
    assert _snapshot(ecs, snapshot_id)["Usage"] == "disk"


def test_delete_snapshot_used_by_a_disk_needs_force(ecs: Ecs) -> None:
    disk_id = ecs.create_available()
    snapshot_id = ecs.call("CreateSnapshot", DiskId=disk_id)["SnapshotId"]
    _wait_snapshot(ecs, snapshot_id)
    ecs.create_available(SnapshotId=snapshot_id)
    assert _code(ecs.error("DeleteSnapshot", SnapshotId=snapshot_id)) == (
        "SnapshotCreatedDisk",
        403,
    )
    body = ecs.call("DeleteSnapshot", SnapshotId=snapshot_id, Force=True)
    assert models.DeleteSnapshotResponseBody().from_map(body).to_map() == body
    found = ecs.call("DescribeSnapshots", SnapshotIds=json.dumps([snapshot_id]))
    assert found["Snapshots"]["Snapshot"] == []
    assert not (ecs.info.state_dir / "snapshots" / f"{snapshot_id}.img").exists()


# --- resize ----------------------------------------------------------------------------


def test_resize_offline_grows_an_available_disk_and_refuses_what_ecs_refuses(ecs: Ecs) -> None:
    disk_id = ecs.create_available(Size=20, DiskCategory="cloud_efficiency")
    body = ecs.call("ResizeDisk", DiskId=disk_id, NewSize=30, Type="offline")
    assert models.ResizeDiskResponseBody().from_map(body).to_map() == body
    assert ecs.disk(disk_id)["Size"] == 30
    assert _disk_file(ecs, disk_id).stat().st_size == 30 * GIB
    assert _code(ecs.error("ResizeDisk", DiskId=disk_id, NewSize=25)) == (
        "InvalidDiskSize.TooSmall",
        403,
    )
    assert _code(ecs.error("ResizeDisk", DiskId=disk_id, NewSize=30)) == (
        "InvalidDiskSize.TooSmall",
        403,
    )
    err = ecs.error("ResizeDisk", DiskId=disk_id, NewSize=40000)
    assert _code(err) == ("InvalidParameter", 400) and "NewSize" in err.get_error_msg()
    err = ecs.error("ResizeDisk", DiskId=disk_id, NewSize=40, Type="online")
    assert _code(err) == ("IncorrectDiskStatus", 403)
    assert _code(ecs.error("ResizeDisk", DiskId="d-nosuchdisk000000000", NewSize=40)) == (
        "InvalidDiskId.NotFound",
        404,
    )
    assert ecs.disk(disk_id)["Size"] == 30


def test_the_largest_disk_a_category_sells_is_created_and_grown_as_ecs_would(ecs: Ecs) -> None:
    """32 TiB is cloud_essd's top size; ext4 (4 KiB blocks) takes files up to 16 TiB. ECS
    answers as it would; the file, and so the device, stops at the filesystem's ceiling."""
    cap = file_size_cap(ecs.info.state_dir)
    top = 32768
    disk_id = ecs.create_available(Size=20, DiskCategory="cloud_essd")
    ecs.call("ResizeDisk", DiskId=disk_id, NewSize=top, Type="offline")
    assert ecs.disk(disk_id)["Size"] == top
    assert _disk_file(ecs, disk_id).stat().st_size == min(top * GIB, cap or top * GIB)
    big = ecs.create_available(Size=top, DiskCategory="cloud_essd", PerformanceLevel="PL1")
    assert ecs.disk(big)["Size"] == top
    assert _disk_file(ecs, big).stat().st_blocks == 0  # sparse whatever its size
    ecs.call("DeleteDisk", DiskId=big)


@pytest.mark.root
@pytest.mark.timeout(120)
def test_online_resize_grows_the_attached_loop_device(host_dir: Path) -> None:
    with running_emulator(host_dir / "ecs", latency_scale=LATENCY_SCALE) as info:
        ecs = Ecs.for_account(info)
        inst = info.instances[0]
        disk_id = ecs.create_available(inst.zone, Size=1, PerformanceLevel="PL0")
        ecs.attach(disk_id, inst.id)
        link = Path(inst.device_root) / "dev" / "disk" / "by-id"
        device = os.readlink(next(p for p in link.iterdir() if p.name.endswith(disk_id[2:])))

        def size() -> int:
            out = subprocess.run(
                ["blockdev", "--getsize64", device], capture_output=True, text=True, check=True
            )
            return int(out.stdout)

        assert size() == GIB
        ecs.call("ResizeDisk", DiskId=disk_id, NewSize=3, Type="online")
        assert size() == 3 * GIB
        ecs.call("ResizeDisk", DiskId=disk_id, NewSize=4, Type="offline")
        assert size() == 3 * GIB  # offline: only after the disk is attached again
        ecs.detach(disk_id, inst.id)
        ecs.attach(disk_id, inst.id)
        device = os.readlink(next(p for p in link.iterdir() if p.name.endswith(disk_id[2:])))
        assert size() == 4 * GIB
        ecs.detach(disk_id, inst.id)


# --- spec changes ----------------------------------------------------------------------


@pytest.fixture
def cooling(ecs: Ecs) -> Iterator[Any]:
    def set_seconds(seconds: float) -> None:
        ecs.info.admin("POST", "/modify-cooling", {"seconds": seconds})

    set_seconds(0)
    yield set_seconds
    set_seconds(0)


def test_modify_pl0_to_pl1_lands_asynchronously_then_cools(ecs: Ecs, cooling: Any) -> None:
    cooling(600)
    disk_id = ecs.create_available(Size=20, PerformanceLevel="PL0")
    body = ecs.call("ModifyDiskSpec", DiskId=disk_id, PerformanceLevel="PL1")
    assert models.ModifyDiskSpecResponseBody().from_map(body).to_map() == body
    assert body["TaskId"].startswith("t-")
    _wait_disk(ecs, disk_id, "PerformanceLevel", "PL1")
    err = ecs.error("ModifyDiskSpec", DiskId=disk_id, PerformanceLevel="PL0")
    assert _code(err) == ("DiskInCoolingPeriod", 403)
    err = ecs.error("ModifyDiskSpec", DiskId=disk_id, PerformanceLevel="PL1")
    assert _code(err) == ("NoChangeInDiskCategoryAndPerformanceLevel", 403)


def test_modify_refuses_levels_the_size_cannot_carry(ecs: Ecs, cooling: Any) -> None:
    disk_id = ecs.create_available(Size=20, PerformanceLevel="PL0")
    for level in ("PL2", "PL3"):
        err = ecs.error("ModifyDiskSpec", DiskId=disk_id, PerformanceLevel=level)
        assert _code(err) == ("OperationDenied.PerformanceLevelNotMatch", 403)
    err = ecs.error("ModifyDiskSpec", DiskId=disk_id, PerformanceLevel="PL9")
    assert _code(err) == ("InvalidPerformanceLevel.Malformed", 400)
    err = ecs.error("ModifyDiskSpec", DiskId=disk_id, DiskCategory="cloud_ssd",
                    PerformanceLevel="PL1")  # fmt: skip
    assert _code(err) == ("InvalidPerformanceLevel.Malformed", 400)
    err = ecs.error("ModifyDiskSpec", DiskId=disk_id, PerformanceLevel="PL1", DryRun=True)
    assert _code(err) == ("DryRunOperation", 400)
    assert ecs.disk(disk_id)["PerformanceLevel"] == "PL0"
    multi = ecs.create_available(Size=20, MultiAttach="Enabled")
    err = ecs.error("ModifyDiskSpec", DiskId=multi, PerformanceLevel="PL0")
    assert _code(err) == ("InvalidOperation.MultiAttachDisk", 403)


def test_modify_changes_category_and_auto_pl_settings(ecs: Ecs, cooling: Any) -> None:
    disk_id = ecs.create_available(Size=20, DiskCategory="cloud_essd", PerformanceLevel="PL1")
    ecs.call("ModifyDiskSpec", DiskId=disk_id, DiskCategory="cloud_ssd")
    disk = _wait_disk(ecs, disk_id, "Category", "cloud_ssd")
    assert disk["PerformanceLevel"] == ""
    auto = ecs.create_available(Size=40, DiskCategory="cloud_auto")
    ecs.call("ModifyDiskSpec", DiskId=auto, ProvisionedIops=5000)
    _wait_disk(ecs, auto, "ProvisionedIops", 5000)
    ecs.call("ModifyDiskAttribute", DiskId=auto, BurstingEnabled=True)
    assert ecs.disk(auto)["BurstingEnabled"] is True
    err = ecs.error("ModifyDiskAttribute", DiskId=disk_id, BurstingEnabled=True)
    assert _code(err) == ("InvalidParameter", 400)
