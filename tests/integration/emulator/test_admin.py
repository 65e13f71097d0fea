"""Admin API: call counts, fault injection, throttling, stock, instance lifecycle, and
state surviving kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException

from csi_disk_emulator.process import (
    EmulatorInfo,
    running_emulator,
    start_emulator,
    stop_emulator,
    wait_ready,
)
from tests.integration.emulator.conftest import LATENCY_SCALE
from tests.integration.emulator.sdk import Ecs

pytestmark = pytest.mark.timeout(180)


def test_call_counts_and_reset(ecs: Ecs, emulator: EmulatorInfo) -> None:
    emulator.admin("POST", "/calls/reset")
    ecs.call("DescribeZones")
    ecs.call("DescribeZones")
    ecs.error("DeleteDisk", DiskId="d-00000000000000000000")
    assert emulator.admin("GET", "/calls")["calls"] == {"DescribeZones": 2, "DeleteDisk": 1}
    emulator.admin("POST", "/calls/reset")
    assert emulator.admin("GET", "/calls")["calls"] == {}


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("InternalError", 500),
        ("ServiceUnavailable", 503),
        ("Throttling", 400),
        ("Forbidden.RAM", 403),
        ("OperationDenied.NoStock", 403),
        ("LastTokenProcessing", 403),
    ],
)
def test_injected_fault_answers_with_the_code_then_recovers(
    ecs: Ecs, emulator: EmulatorInfo, code: str, status: int
) -> None:
    emulator.admin("POST", "/faults", {"action": "DescribeZones", "code": code, "count": 2})
    try:
        for _ in range(2):
            err = ecs.error("DescribeZones")
            assert (err.get_error_code(), err.get_http_status()) == (code, status)
        assert ecs.call("DescribeZones")["Zones"]["Zone"]
    finally:
        emulator.admin("DELETE", "/faults")


def fault_pattern(info: EmulatorInfo, calls: int = 40) -> list[bool]:
    """Which of ``calls`` DescribeZones fail under an InternalError fault at rate 0.5; any
    other failure is not the fault and fails the test."""
    ecs = Ecs.for_account(info)
    info.admin("POST", "/faults", {"action": "DescribeZones", "code": "InternalError", "rate": 0.5})
    failed = []
    try:
        for _ in range(calls):
            try:
                ecs.call("DescribeZones")
                failed.append(False)
            except ServerException as err:
                assert (err.get_error_code(), err.get_http_status()) == ("InternalError", 500)
                failed.append(True)
    finally:
        info.admin("DELETE", "/faults")
    return failed


def test_fault_rate_is_seeded_and_partial(tmp_path: Path) -> None:
    patterns = []
    for n, seed in enumerate((3, 3, 4)):
        state = tmp_path / f"ecs-{n}"
        with running_emulator(
            state, latency_scale=LATENCY_SCALE, seed=seed, block_devices="off"
        ) as info:
            patterns.append(fault_pattern(info))
    first, again, other = patterns
    assert True in first and False in first  # partial
    assert again == first  # the same seed fails the same calls
    assert other != first  # another seed, other calls (2**-40 to collide)


def test_throttling_per_access_key(ecs: Ecs, emulator: EmulatorInfo) -> None:
    emulator.admin(
        "POST", "/throttle", {"access_key_id": emulator.access_key_id, "per_second": 0.001}
    )
    try:
        codes = []
        for _ in range(3):
            try:
                ecs.call("DescribeZones")
                codes.append("ok")
            except Exception as err:
                codes.append(err.get_error_code())  # type: ignore[attr-defined]
    finally:
        emulator.admin(
            "POST", "/throttle", {"access_key_id": emulator.access_key_id, "per_second": None}
        )
    assert codes[0] == "ok"
    assert "Throttling.User" in codes[1:]
    assert ecs.call("DescribeZones")["Zones"]["Zone"]


def test_stock_runs_out_per_zone_and_category(ecs: Ecs, emulator: EmulatorInfo) -> None:
    zone = emulator.zones[1]
    emulator.admin("POST", "/stock", {"zone": zone, "category": "cloud_ssd", "count": 1})
    try:
        ecs.create(zone, DiskCategory="cloud_ssd", Size=20)
        err = ecs.error("CreateDisk", ZoneId=zone, DiskCategory="cloud_ssd", Size=20)
        assert (err.get_error_code(), err.get_http_status()) == ("OperationDenied.NoStock", 403)
        assert ecs.create(zone, DiskCategory="cloud_essd", Size=20)
        assert ecs.create(emulator.zones[0], DiskCategory="cloud_ssd", Size=20)
        resources = ecs.call(
            "DescribeAvailableResource",
            DestinationResource="DataDisk",
            ResourceType="disk",
            ZoneId=zone,
        )
        supported = resources["AvailableZones"]["AvailableZone"][0]["AvailableResources"][
            "AvailableResource"
        ][0]["SupportedResources"]["SupportedResource"]
        assert {s["Value"]: s["Status"] for s in supported}["cloud_ssd"] == "SoldOut"
    finally:
        emulator.admin("POST", "/stock", {"zone": zone, "category": "cloud_ssd", "count": None})


def test_stopped_instance_keeps_its_attachments_and_release_frees_them(own_emulator) -> None:  # type: ignore[no-untyped-def]
    with own_emulator() as info:
        ecs = Ecs.for_account(info)
        inst = info.instances[0]
        disk_id = ecs.create_available(inst.zone)
        ecs.attach(disk_id, inst.id)
        info.admin("POST", f"/instances/{inst.id}/status", {"status": "Stopping"})
        other = ecs.create_available(inst.zone)
        err = ecs.error("AttachDisk", DiskId=other, InstanceId=inst.id)
        assert (err.get_error_code(), err.get_http_status()) == ("IncorrectInstanceStatus", 403)
        info.admin("POST", f"/instances/{inst.id}/stop")
        assert ecs.disk(disk_id)["Status"] == "In_use"
        stopped = ecs.call("DescribeInstances", InstanceIds=json.dumps([inst.id]))
        assert stopped["Instances"]["Instance"][0]["Status"] == "Stopped"
        info.admin("POST", f"/instances/{inst.id}/release")
        disk = ecs.disk(disk_id)
        assert (disk["Status"], disk["Attachments"]["Attachment"]) == ("Available", [])
        assert (
            ecs.call("DescribeInstances", InstanceIds=json.dumps([inst.id]))["Instances"][
                "Instance"
            ]
            == []
        )
        err = ecs.error("AttachDisk", DiskId=disk_id, InstanceId=inst.id)
        assert err.get_error_code() == "InvalidInstanceId.NotFound"


def test_kill_9_and_restart_keeps_everything(tmp_path: Path) -> None:
    state = tmp_path / "ecs"
    process = start_emulator(state, latency_scale=LATENCY_SCALE)
    try:
        info = wait_ready(state, process)
        ecs = Ecs.for_account(info)
        inst = info.instances[0]
        attached = ecs.create_available(inst.zone, Tags=[{"Key": "k", "Value": "v"}])
        ecs.attach(attached, inst.id)
        token_disk = ecs.create(inst.zone, ClientToken="n:restart-token")
        info.admin("POST", "/sticky", {"actions": ["AttachDisk"]})
        pending = ecs.create_available(inst.zone)
        ecs.call("AttachDisk", DiskId=pending, InstanceId=inst.id)
        before = {d: ecs.disk(d) for d in (attached, token_disk, pending)}
        loop_before = _loops(state)
        process.send_signal(signal.SIGKILL)
        process.wait()

        process = start_emulator(state, latency_scale=LATENCY_SCALE)
        info2 = wait_ready(state, process)
        assert (info2.access_key_id, [i.id for i in info2.instances]) == (
            info.access_key_id,
            [i.id for i in info.instances],
        )
        ecs2 = Ecs.for_account(info2)
        assert ecs2.disk(attached) == before[attached]
        assert ecs2.disk(pending)["Status"] == "Attaching"
        assert ecs2.create(inst.zone, ClientToken="n:restart-token") == token_disk
        assert _loops(state) == loop_before
        info2.admin("POST", f"/disks/{pending}/stuck", {"stuck": False})
        ecs2.wait_status(pending, "In_use")
        ecs2.detach(attached, inst.id)
        ecs2.detach(pending, inst.id)
    finally:
        stop_emulator(process)


def _loops(state: Path) -> set[str]:
    """Loop devices backed by the state dir's disk files, per losetup."""
    out = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return {line.split()[0] for line in out.splitlines() if str(state) in line}


def test_emulator_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """A killed test runner or demo must not leave an emulator holding loop devices."""
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from csi_disk_emulator.process import start_emulator, wait_ready\n"
        "p = start_emulator(Path(sys.argv[1]), block_devices='off')\n"
        "wait_ready(Path(sys.argv[1]), p)\n"
        "print(p.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "ecs")],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    pid = int(out.split()[-1])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    raise AssertionError("the emulator outlived the process that started it")
