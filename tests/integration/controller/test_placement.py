"""Placement through the socket against the emulator: the selected node's disk types and the
zones' stock choose the category before any CreateDisk, GetCapacity follows a stock change
within --stock-refresh-interval, and a regional ESSD is created for the region."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from csi_disk import topology
from csi_disk.csi_pb import csi_pb2
from csi_disk_emulator.process import EmulatorInfo
from tests.daemon import Daemon
from tests.integration.controller.conftest import controller, create_request, disk_row

REGIONAL = "cloud_regional_disk_auto"
G7 = ("cloud_auto", "cloud_efficiency", "cloud_essd", "cloud_ssd")


@pytest.fixture(scope="module")
def daemon(
    fast_emulator: EmulatorInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    directory = tmp_path_factory.mktemp("ctl-placement")
    with controller(fast_emulator, directory, "--stock-refresh-interval", "0.2") as d:
        yield d


def node(info: EmulatorInfo, zone: str, *types: str) -> dict[str, str]:
    return topology.node_segments(zone, info.region, f"i-{zone}", types)


def capacity(daemon: Daemon, params: dict[str, str], segments: dict[str, str]) -> int:
    answer = daemon.controller.GetCapacity(
        csi_pb2.GetCapacityRequest(
            parameters=params, accessible_topology=csi_pb2.Topology(segments=segments)
        ),
        timeout=30,
    )
    return answer.maximum_volume_size.value


def test_the_category_the_selected_node_attaches_without_a_refused_create(
    daemon: Daemon, fast: EmulatorInfo
) -> None:
    zone = fast.zones[0]
    creates = fast.calls().get("CreateDisk", 0)
    g7 = node(fast, zone, *G7)
    reply = daemon.controller.CreateVolume(
        create_request("placed-auto", params={"type": "cloud_essd_entry,cloud_auto"},
                       preferred=[g7], requisite=[g7]),
        timeout=30,
    )  # fmt: skip
    assert disk_row(fast, reply.volume.volume_id)["category"] == "cloud_auto"
    assert fast.calls()["CreateDisk"] == creates + 1
    assert dict(reply.volume.accessible_topology[0].segments) == {
        topology.ZONE_KEY: zone,
        topology.disk_type_key("cloud_auto"): "available",
    }


def test_get_capacity_follows_the_stock(daemon: Daemon, fast: EmulatorInfo) -> None:
    first, second = fast.zones[0], fast.zones[1]
    params = {"type": "cloud_auto"}
    assert capacity(daemon, params, node(fast, first, *G7)) == 65536 << 30
    fast.admin("POST", "/stock", {"zone": first, "category": "cloud_auto", "count": 0})
    deadline = time.monotonic() + 10
    while capacity(daemon, params, node(fast, first, *G7)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert capacity(daemon, params, node(fast, first, *G7)) == 0
    assert capacity(daemon, params, node(fast, second, *G7)) == 65536 << 30
    before = fast.calls()["DescribeAvailableResource"]
    for _ in range(20):
        capacity(daemon, params, node(fast, second, *G7))
    assert fast.calls()["DescribeAvailableResource"] - before <= 4  # reads, not one per call


def test_a_regional_disk_for_a_node_that_attaches_it(daemon: Daemon, fast: EmulatorInfo) -> None:
    g8i = node(fast, fast.zones[2], "cloud_auto", "cloud_essd", REGIONAL)
    reply = daemon.controller.CreateVolume(
        create_request("placed-regional", params={"type": f"{REGIONAL},cloud_essd"},
                       preferred=[g8i], requisite=[g8i]),
        timeout=30,
    )  # fmt: skip
    row = disk_row(fast, reply.volume.volume_id)
    assert (row["category"], row["zone"]) == (REGIONAL, "")
    assert dict(reply.volume.accessible_topology[0].segments) == {
        topology.K8S_REGION_KEY: fast.region,
        topology.disk_type_key(REGIONAL): "available",
    }
    assert capacity(daemon, {"type": REGIONAL}, g8i) == 65536 << 30
    assert capacity(daemon, {"type": REGIONAL}, node(fast, fast.zones[0], *G7)) == 0
