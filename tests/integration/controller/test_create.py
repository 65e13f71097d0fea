"""CreateVolume through the socket: zone choice, category fallback, idempotent repeats."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from csi_disk.csi_pb import csi_pb2
from csi_disk.topology import K8S_ZONE_KEY, ZONE_KEY
from csi_disk_emulator.process import EmulatorInfo
from tests.daemon import Daemon
from tests.integration.controller.conftest import (
    GIB,
    StartController,
    controller,
    create_request,
    disk_row,
    disks_named,
)


@pytest.fixture(scope="module")
def daemon(
    fast_emulator: EmulatorInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    with controller(fast_emulator, tmp_path_factory.mktemp("ctl-create")) as d:
        yield d


def test_preferred_zone_is_used_and_reported(daemon: Daemon, fast: EmulatorInfo) -> None:
    for i, zone in enumerate(fast.zones):
        others = [{ZONE_KEY: z} for z in fast.zones if z != zone]
        reply = daemon.controller.CreateVolume(
            create_request(
                f"pref-{i}",
                preferred=[{ZONE_KEY: zone}, *others],
                requisite=[{ZONE_KEY: z} for z in fast.zones],
            ),
            timeout=30,
        )
        volume = reply.volume
        assert [dict(t.segments) for t in volume.accessible_topology] == [{ZONE_KEY: zone}]
        assert disk_row(fast, volume.volume_id)["zone"] == zone
        assert volume.capacity_bytes == 20 * GIB


def test_requisite_only_picks_a_requisite_zone(daemon: Daemon, fast: EmulatorInfo) -> None:
    zone = fast.zones[-1]
    reply = daemon.controller.CreateVolume(
        create_request("req-only", requisite=[{ZONE_KEY: zone}]), timeout=30
    )
    assert dict(reply.volume.accessible_topology[0].segments) == {ZONE_KEY: zone}
    assert disk_row(fast, reply.volume.volume_id)["zone"] == zone


def test_upstream_zone_key_in_requirements(daemon: Daemon, fast: EmulatorInfo) -> None:
    zone = fast.zones[1]
    reply = daemon.controller.CreateVolume(
        create_request(
            "k8s-key", preferred=[{K8S_ZONE_KEY: zone}], requisite=[{K8S_ZONE_KEY: zone}]
        ),
        timeout=30,
    )
    assert dict(reply.volume.accessible_topology[0].segments) == {ZONE_KEY: zone}
    assert disk_row(fast, reply.volume.volume_id)["zone"] == zone


def test_no_stock_falls_back_to_the_next_category(daemon: Daemon, fast: EmulatorInfo) -> None:
    zone = fast.zones[0]
    fast.admin("POST", "/stock", {"zone": zone, "category": "cloud_essd", "count": 0})
    reply = daemon.controller.CreateVolume(
        create_request(
            "nostock", params={"type": "cloud_essd,cloud_ssd"}, requisite=[{ZONE_KEY: zone}]
        ),
        timeout=30,
    )
    row = disk_row(fast, reply.volume.volume_id)
    assert row["category"] == "cloud_ssd"
    assert reply.volume.volume_context["type"] == "cloud_ssd"
    assert [r["category"] for r in disks_named(fast, "nostock")] == ["cloud_ssd"]


def test_unsupported_category_falls_back(daemon: Daemon, fast: EmulatorInfo) -> None:
    zone = fast.zones[-1]  # the NVMe zone sells no cloud_ssd
    reply = daemon.controller.CreateVolume(
        create_request(
            "unsupported", params={"type": "cloud_ssd,cloud_essd"}, requisite=[{ZONE_KEY: zone}]
        ),
        timeout=30,
    )
    assert disk_row(fast, reply.volume.volume_id)["category"] == "cloud_essd"


def test_nothing_left_is_resource_exhausted(daemon: Daemon, fast: EmulatorInfo) -> None:
    zone = fast.zones[0]
    for category in ("cloud_essd", "cloud_ssd"):
        fast.admin("POST", "/stock", {"zone": zone, "category": category, "count": 0})
    with pytest.raises(grpc.RpcError) as err:
        daemon.controller.CreateVolume(
            create_request(
                "exhausted", params={"type": "cloud_essd,cloud_ssd"}, requisite=[{ZONE_KEY: zone}]
            ),
            timeout=30,
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "cloud_ssd" in err.value.details()
    assert disks_named(fast, "exhausted") == []


def test_same_name_twice_is_the_same_volume(daemon: Daemon, fast: EmulatorInfo) -> None:
    first = daemon.controller.CreateVolume(create_request("twice"), timeout=30)
    second = daemon.controller.CreateVolume(create_request("twice"), timeout=30)
    assert first.volume.volume_id == second.volume.volume_id
    assert first.volume.accessible_topology == second.volume.accessible_topology
    assert len(disks_named(fast, "twice")) == 1


def test_same_name_other_size_already_exists(daemon: Daemon, fast: EmulatorInfo) -> None:
    daemon.controller.CreateVolume(create_request("resized", 20), timeout=30)
    with pytest.raises(grpc.RpcError) as err:
        daemon.controller.CreateVolume(create_request("resized", 40, limit_gib=40), timeout=30)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert len(disks_named(fast, "resized")) == 1


def test_repeat_after_fallback_is_the_same_volume(daemon: Daemon, fast: EmulatorInfo) -> None:
    """The repeat tries cloud_essd first again, with the token used for cloud_ssd."""
    zone = fast.zones[0]
    fast.admin("POST", "/stock", {"zone": zone, "category": "cloud_essd", "count": 0})
    request = create_request(
        "fallback-repeat", params={"type": "cloud_essd,cloud_ssd"}, requisite=[{ZONE_KEY: zone}]
    )
    first = daemon.controller.CreateVolume(request, timeout=30)
    fast.admin("POST", "/stock", {"zone": zone, "category": "cloud_essd", "count": None})
    second = daemon.controller.CreateVolume(request, timeout=30)
    assert second.volume.volume_id == first.volume.volume_id
    assert second.volume.volume_context["type"] == "cloud_ssd"
    assert len(disks_named(fast, "fallback-repeat")) == 1


def test_repeat_across_a_restart(fast: EmulatorInfo, start_controller: StartController) -> None:
    with start_controller(fast, name="before") as before:
        first = before.controller.CreateVolume(create_request("restart"), timeout=30)
    with start_controller(fast, name="after") as after:
        second = after.controller.CreateVolume(create_request("restart"), timeout=30)
    assert second.volume.volume_id == first.volume.volume_id
    assert len(disks_named(fast, "restart")) == 1


def delete(daemon: Daemon, volume_id: str) -> None:
    daemon.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id), timeout=30)


@pytest.mark.parametrize("second_gib", [20, 40], ids=["same-size", "other-size"])
def test_name_reused_after_delete_gets_a_new_disk(
    daemon: Daemon, fast: EmulatorInfo, start_controller: StartController, second_gib: int
) -> None:
    """ECS answers a used client token with the old disk id even after that disk is gone."""
    name = f"reused-{second_gib}"
    first = daemon.controller.CreateVolume(create_request(name, 20), timeout=30).volume
    delete(daemon, first.volume_id)
    for round_ in range(2):
        again = daemon.controller.CreateVolume(create_request(name, second_gib), timeout=30)
        assert again.volume.volume_id != first.volume_id
        assert again.volume.capacity_bytes == second_gib * GIB
        assert [r["id"] for r in disks_named(fast, name)] == [again.volume.volume_id]
        if round_ == 0:  # a second life, then a third after another delete, from a new process
            delete(daemon, again.volume.volume_id)
    with start_controller(fast, name="reuse") as other:
        repeat = other.controller.CreateVolume(create_request(name, second_gib), timeout=30)
    assert repeat.volume.volume_id == again.volume.volume_id


def exhaust(info: EmulatorInfo, zone: str, categories: tuple[str, ...]) -> None:
    for category in categories:
        info.admin("POST", "/stock", {"zone": zone, "category": category, "count": 0})


def test_first_zone_out_of_stock_falls_back_to_the_next(
    fast: EmulatorInfo, start_controller: StartController
) -> None:
    """Immediate binding fixes the provisioner's zone order: the first zone running dry must
    not fail the volume while another requisite zone has stock. The retry (reply lost, new
    process, stock back in the first zone) finds the same disk instead of making a second."""
    first_zone, second_zone = fast.zones[0], fast.zones[1]
    types = ("cloud_essd", "cloud_ssd")
    exhaust(fast, first_zone, types)
    request = create_request(
        "zone-fallback",
        params={"type": ",".join(types)},
        preferred=[{ZONE_KEY: first_zone}, {ZONE_KEY: second_zone}],
        requisite=[{ZONE_KEY: first_zone}, {ZONE_KEY: second_zone}],
    )
    with start_controller(fast, name="zones-1") as one:
        first = one.controller.CreateVolume(request, timeout=30).volume
    assert dict(first.accessible_topology[0].segments) == {ZONE_KEY: second_zone}
    assert disk_row(fast, first.volume_id)["zone"] == second_zone
    fast.admin("DELETE", "/faults")
    for category in types:
        fast.admin("POST", "/stock", {"zone": first_zone, "category": category, "count": None})
    with start_controller(fast, name="zones-2") as two:
        again = two.controller.CreateVolume(request, timeout=30).volume
    assert again.volume_id == first.volume_id
    assert [r["id"] for r in disks_named(fast, "zone-fallback")] == [first.volume_id]


def test_every_requisite_zone_exhausted_is_resource_exhausted(
    daemon: Daemon, fast: EmulatorInfo
) -> None:
    types = ("cloud_essd", "cloud_ssd")
    for zone in fast.zones[:2]:
        exhaust(fast, zone, types)
    with pytest.raises(grpc.RpcError) as err:
        daemon.controller.CreateVolume(
            create_request(
                "all-dry",
                params={"type": ",".join(types)},
                requisite=[{ZONE_KEY: z} for z in fast.zones[:2]],
            ),
            timeout=30,
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert all(zone in err.value.details() for zone in fast.zones[:2])
    assert disks_named(fast, "all-dry") == []


def test_unknown_zone_is_invalid_argument_naming_it(daemon: Daemon, fast: EmulatorInfo) -> None:
    zone = f"{fast.region}-zz"
    with pytest.raises(grpc.RpcError) as err:
        daemon.controller.CreateVolume(
            create_request("nowhere", params={"zoneId": zone}), timeout=30
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert zone in err.value.details() and "zoneId" in err.value.details()


def test_requisite_without_zone_is_invalid_argument(daemon: Daemon, fast: EmulatorInfo) -> None:
    with pytest.raises(grpc.RpcError) as err:
        daemon.controller.CreateVolume(
            create_request("no-zone-key", requisite=[{"example.com/rack": "r1"}]), timeout=30
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert disks_named(fast, "no-zone-key") == []


def test_name_with_control_characters_never_reaches_ecs_or_the_log(
    daemon: Daemon, fast: EmulatorInfo
) -> None:
    name = "a/../b\nINFO forged\x00c"
    with pytest.raises(grpc.RpcError) as err:
        daemon.controller.CreateVolume(create_request(name), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "\n" not in err.value.details()
    # The request may be logged, escaped; no line may start with the forged text.
    assert not [line for line in daemon.log().splitlines() if line.startswith("INFO forged")]
    assert "\x00" not in daemon.log()
    assert disks_named(fast, name) == []
