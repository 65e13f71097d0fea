"""CreateVolume while disks really take a second to create: lost replies, a caller's
deadline shorter than the create, and a burst.

A reply is lost only once CreateDisk has reached ECS (the disk's row exists), never on a
timer that may expire before the call is sent. How few DescribeDisks a burst costs is a
speed figure: bench/create.py measures it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from csi_disk.csi_pb import csi_pb2
from csi_disk.topology import ZONE_KEY
from csi_disk_emulator.process import EmulatorInfo
from tests.daemon import Daemon
from tests.integration.controller.conftest import (
    StartController,
    controller,
    create_request,
    disks_named,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

BURST = 100


@pytest.fixture(scope="module")
def daemon(
    slow_emulator: EmulatorInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    with controller(slow_emulator, tmp_path_factory.mktemp("ctl-slow")) as d:
        yield d


def create_until_done(
    daemon: Daemon, request: csi_pb2.CreateVolumeRequest, deadline: float = 60.0
) -> csi_pb2.CreateVolumeResponse:
    """Retry as external-provisioner does: ABORTED (call in flight) and timeouts repeat."""
    give_up = time.monotonic() + deadline
    while True:
        try:
            return daemon.controller.CreateVolume(request, timeout=30)
        except grpc.RpcError as err:
            retryable = (grpc.StatusCode.ABORTED, grpc.StatusCode.DEADLINE_EXCEEDED)
            if err.code() not in retryable or time.monotonic() > give_up:
                raise
            time.sleep(0.2)


def sent_then_creating(info: EmulatorInfo, name: str) -> list[dict[str, Any]]:
    """The disk rows of ``name`` once CreateDisk has made one (Creating lasts a second)."""
    return wait_until(lambda: disks_named(info, name), f"CreateDisk for {name} reached ECS", 30)


def test_lost_reply_then_retry_gives_the_same_disk(daemon: Daemon, slow: EmulatorInfo) -> None:
    request = create_request("lost-reply", requisite=[{ZONE_KEY: slow.zones[0]}])
    call = daemon.controller.CreateVolume.future(request, timeout=60)
    rows = sent_then_creating(slow, "lost-reply")
    call.cancel()  # the provisioner gives up: the reply to a CreateDisk that happened is lost
    assert call.cancelled()
    assert [r["status"] for r in rows] == ["Creating"]
    reply = create_until_done(daemon, request)
    rows = disks_named(slow, "lost-reply")
    assert [r["id"] for r in rows] == [reply.volume.volume_id]
    assert rows[0]["status"] == "Available"


def test_controller_killed_while_creating_then_retry_gives_the_same_disk(
    slow: EmulatorInfo, start_controller: StartController
) -> None:
    request = create_request("killed-while-creating", requisite=[{ZONE_KEY: slow.zones[1]}])
    with start_controller(slow, name="killed") as first:
        call = first.controller.CreateVolume.future(request, timeout=60)
        rows = sent_then_creating(slow, "killed-while-creating")
        first.process.kill()  # no drain: the reply is lost with the process
        first.process.wait()
        with pytest.raises(grpc.RpcError):
            call.result(timeout=30)
    assert [r["status"] for r in rows] == ["Creating"]
    with start_controller(slow, name="successor") as second:
        reply = create_until_done(second, request)
    rows = disks_named(slow, "killed-while-creating")
    assert [r["id"] for r in rows] == [reply.volume.volume_id]
    assert rows[0]["status"] == "Available"


def test_past_its_callers_deadline_create_frees_the_name_and_the_retry_gets_the_disk(
    daemon: Daemon, slow: EmulatorInfo
) -> None:
    """The provisioner's timeout runs out while the disk is still Creating: the controller
    answers DEADLINE_EXCEEDED itself, before the caller's deadline and with its lock already
    released, and the same request again finds that disk: one CreateDisk in all."""
    request = create_request("past-deadline", requisite=[{ZONE_KEY: slow.zones[0]}])
    slow.admin("POST", "/calls/reset")
    with pytest.raises(grpc.RpcError) as late:
        daemon.controller.CreateVolume(request, timeout=0.5)
    (row,) = disks_named(slow, "past-deadline")
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert row["id"] in late.value.details(), "the caller's own timeout, not the driver's answer"
    reply = daemon.controller.CreateVolume(request, timeout=30)  # not ABORTED: nothing holds it
    assert reply.volume.volume_id == row["id"]
    assert disks_named(slow, "past-deadline")[0]["status"] == "Available"
    assert slow.admin("GET", "/calls")["calls"].get("CreateDisk") == 1


def test_burst_of_creates_gives_each_name_its_own_disk(daemon: Daemon, slow: EmulatorInfo) -> None:
    zones = slow.zones
    requests = [
        create_request(f"burst-{i:03d}", requisite=[{ZONE_KEY: zones[i % len(zones)]}])
        for i in range(BURST)
    ]
    slow.admin("POST", "/calls/reset")
    with ThreadPoolExecutor(BURST) as pool:
        replies = list(pool.map(lambda r: daemon.controller.CreateVolume(r, timeout=90), requests))
    calls = slow.admin("GET", "/calls")["calls"]
    ids = [r.volume.volume_id for r in replies]
    assert len(set(ids)) == BURST
    for i, request in enumerate(requests):
        rows = disks_named(slow, request.name)
        assert [r["id"] for r in rows] == [ids[i]]
        assert rows[0]["status"] == "Available"
    print(f"{BURST} creates: {calls}")
    assert calls.get("CreateDisk", 0) >= BURST
