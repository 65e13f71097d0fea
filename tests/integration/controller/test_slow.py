"""CreateVolume while disks really take a second to create: lost replies and a burst."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from csi_disk.csi_pb import csi_pb2
from csi_disk.emulator.process import EmulatorInfo
from csi_disk.topology import ZONE_KEY
from tests.daemon import Daemon
from tests.integration.controller.conftest import (
    StartController,
    controller,
    create_request,
    disks_named,
)

pytestmark = pytest.mark.timeout(180)

BURST = 100
DESCRIBE_BUDGET = 20


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


def test_lost_reply_then_retry_gives_the_same_disk(daemon: Daemon, slow: EmulatorInfo) -> None:
    request = create_request("lost-reply", requisite=[{ZONE_KEY: slow.zones[0]}])
    with pytest.raises(grpc.RpcError) as err:
        daemon.controller.CreateVolume(request, timeout=0.3)  # gives up while Creating
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    reply = create_until_done(daemon, request)
    rows = disks_named(slow, "lost-reply")
    assert [r["id"] for r in rows] == [reply.volume.volume_id]
    assert rows[0]["status"] == "Available"


def test_controller_killed_while_creating_then_retry_gives_the_same_disk(
    slow: EmulatorInfo, start_controller: StartController
) -> None:
    request = create_request("killed-while-creating", requisite=[{ZONE_KEY: slow.zones[1]}])
    with start_controller(slow, name="killed") as first:
        with pytest.raises(grpc.RpcError):
            first.controller.CreateVolume(request, timeout=0.3)
        rows = disks_named(slow, "killed-while-creating")
        first.process.kill()  # no drain: the reply is lost with the process
        first.process.wait()
    assert [r["status"] for r in rows] in ([], ["Creating"])
    with start_controller(slow, name="successor") as second:
        reply = create_until_done(second, request)
    rows = disks_named(slow, "killed-while-creating")
    assert [r["id"] for r in rows] == [reply.volume.volume_id]
    assert rows[0]["status"] == "Available"


def test_burst_of_creates_shares_describe_calls(daemon: Daemon, slow: EmulatorInfo) -> None:
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
    assert calls.get("DescribeDisks", 0) <= DESCRIBE_BUDGET, calls
