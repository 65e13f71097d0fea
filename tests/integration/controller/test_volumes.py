"""DeleteVolume, ControllerPublish/Unpublish (--attach-mode controller), queries, bad input."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from csi_disk.csi_pb import csi_pb2
from csi_disk.topology import ZONE_KEY
from csi_disk_emulator.process import EmulatorInfo, EmulatorInstance
from tests.daemon import Daemon
from tests.integration.controller.conftest import (
    attachments_of,
    controller,
    create_request,
    disk_row,
    mount_cap,
)

UNKNOWN_DISK = "d-0000000000000000000x"
MALFORMED_IDS = ("d-\n1", "", "d-" + "x" * 127)
NAMELESS_IDS = ("../x", "d-x/y", "fake-vol-id-1")


@pytest.fixture(scope="module")
def daemon(
    fast_emulator: EmulatorInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    with controller(
        fast_emulator, tmp_path_factory.mktemp("ctl-volumes"), attach_mode="controller"
    ) as d:
        yield d


def code_of(call: object, *args: object, **kwargs: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call(*args, **kwargs)  # type: ignore[operator]
    return err.value.code()


def make_volume(daemon: Daemon, name: str, zone: str) -> str:
    reply = daemon.controller.CreateVolume(
        create_request(name, requisite=[{ZONE_KEY: zone}]), timeout=30
    )
    return reply.volume.volume_id


def publish(
    daemon: Daemon, volume_id: str, node_id: str
) -> csi_pb2.ControllerPublishVolumeResponse:
    return daemon.controller.ControllerPublishVolume(
        csi_pb2.ControllerPublishVolumeRequest(
            volume_id=volume_id, node_id=node_id, volume_capability=mount_cap()
        ),
        timeout=30,
    )


def unpublish(daemon: Daemon, volume_id: str, node_id: str) -> None:
    daemon.controller.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=node_id), timeout=30
    )


def delete(daemon: Daemon, volume_id: str) -> None:
    daemon.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id), timeout=30)


def pair_in_one_zone(info: EmulatorInfo) -> tuple[EmulatorInstance, EmulatorInstance]:
    zone = info.zones[0]
    first, second = info.instances_in(zone)[:2]
    return first, second


# --- what each step costs ------------------------------------------------------------------


def calls_since_reset(info: EmulatorInfo) -> dict[str, int]:
    """ECS calls since the last reset, then a reset; the shared waiter's DescribeDisks polls
    are left out (they are shared by every call waiting at the time)."""
    calls = info.calls()
    info.admin("POST", "/calls/reset")
    polls = calls.pop("DescribeDisks", 0)
    assert polls <= 3, f"{polls} DescribeDisks for one wait"
    return calls


def test_each_step_of_a_volume_costs_its_one_ecs_call(daemon: Daemon, fast: EmulatorInfo) -> None:
    """Create, attach, detach and delete each cost their one ECS mutation: no DescribeDisks
    before acting, no DescribeInstances; waits share the waiter's polls."""
    node, _ = pair_in_one_zone(fast)
    fast.admin("POST", "/calls/reset")
    volume_id = make_volume(daemon, "economy", node.zone)
    created = calls_since_reset(fast)
    # The stock read (one DescribeAvailableResource for the zones, one for the region) is
    # shared by every CreateVolume and GetCapacity until --stock-refresh-interval passes.
    assert created.pop("DescribeAvailableResource", 0) <= 2
    assert created == {"CreateDisk": 1}
    publish(daemon, volume_id, node.id)
    assert calls_since_reset(fast) == {"AttachDisk": 1}
    unpublish(daemon, volume_id, node.id)
    assert calls_since_reset(fast) == {"DetachDisk": 1}
    delete(daemon, volume_id)
    assert fast.calls() == {"DeleteDisk": 1}  # nothing waited for: not even a poll
    assert disk_row(fast, volume_id) is None


# --- DeleteVolume ---------------------------------------------------------------------------


def test_delete_is_idempotent(daemon: Daemon, fast: EmulatorInfo) -> None:
    volume_id = make_volume(daemon, "delete-twice", fast.zones[0])
    delete(daemon, volume_id)
    assert disk_row(fast, volume_id) is None
    delete(daemon, volume_id)
    delete(daemon, UNKNOWN_DISK)


def test_delete_refuses_a_disk_on_a_running_instance(daemon: Daemon, fast: EmulatorInfo) -> None:
    node, _ = pair_in_one_zone(fast)
    volume_id = make_volume(daemon, "delete-attached", node.zone)
    publish(daemon, volume_id, node.id)
    assert code_of(delete, daemon, volume_id) == grpc.StatusCode.FAILED_PRECONDITION
    assert disk_row(fast, volume_id) is not None
    unpublish(daemon, volume_id, node.id)
    delete(daemon, volume_id)
    assert disk_row(fast, volume_id) is None


# --- ControllerPublish / Unpublish ----------------------------------------------------------


def test_publish_in_zone_gives_the_serial_and_unpublish_twice(
    daemon: Daemon, fast: EmulatorInfo
) -> None:
    node, _ = pair_in_one_zone(fast)
    volume_id = make_volume(daemon, "publish", node.zone)
    reply = publish(daemon, volume_id, node.id)
    assert reply.publish_context["serial"] == volume_id.removeprefix("d-")
    assert list(attachments_of(fast, volume_id)) == [node.id]
    assert attachments_of(fast, volume_id)[node.id] not in ("Attaching", "Detaching")
    again = publish(daemon, volume_id, node.id)  # already attached: same answer
    assert again.publish_context == reply.publish_context
    unpublish(daemon, volume_id, node.id)
    assert attachments_of(fast, volume_id) == {}
    unpublish(daemon, volume_id, node.id)
    unpublish(daemon, UNKNOWN_DISK, node.id)
    delete(daemon, volume_id)


def test_publish_to_another_zone_fails_precondition(daemon: Daemon, fast: EmulatorInfo) -> None:
    volume_id = make_volume(daemon, "publish-wrong-zone", fast.zones[0])
    elsewhere = fast.instances_in(fast.zones[1])[0]
    code = code_of(publish, daemon, volume_id, elsewhere.id)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert attachments_of(fast, volume_id) == {}


def test_publish_to_an_unknown_node_is_not_found(daemon: Daemon, fast: EmulatorInfo) -> None:
    volume_id = make_volume(daemon, "publish-no-node", fast.zones[0])
    assert code_of(publish, daemon, volume_id, "i-doesnotexist000000") == grpc.StatusCode.NOT_FOUND
    node, _ = pair_in_one_zone(fast)
    assert code_of(publish, daemon, UNKNOWN_DISK, node.id) == grpc.StatusCode.NOT_FOUND


def test_disk_held_by_a_running_instance_is_not_taken(daemon: Daemon, fast: EmulatorInfo) -> None:
    holder, other = pair_in_one_zone(fast)
    volume_id = make_volume(daemon, "held-running", holder.zone)
    publish(daemon, volume_id, holder.id)
    assert code_of(publish, daemon, volume_id, other.id) == grpc.StatusCode.FAILED_PRECONDITION
    assert list(attachments_of(fast, volume_id)) == [holder.id]
    unpublish(daemon, volume_id, holder.id)


def test_disk_held_by_a_stopped_instance_is_taken_over(daemon: Daemon, fast: EmulatorInfo) -> None:
    holder, other = pair_in_one_zone(fast)
    volume_id = make_volume(daemon, "held-stopped", holder.zone)
    publish(daemon, volume_id, holder.id)
    fast.admin("POST", f"/instances/{holder.id}/stop")
    try:
        reply = publish(daemon, volume_id, other.id)
    finally:
        fast.admin("POST", f"/instances/{holder.id}/start")
    assert reply.publish_context["serial"] == volume_id.removeprefix("d-")
    assert list(attachments_of(fast, volume_id)) == [other.id]
    unpublish(daemon, volume_id, other.id)


# --- queries ------------------------------------------------------------------------------


def test_get_and_list_report_the_volume(daemon: Daemon, fast: EmulatorInfo) -> None:
    names = [f"listed-{i}" for i in range(3)]
    ids = {make_volume(daemon, n, fast.zones[1]) for n in names}
    got = daemon.controller.ControllerGetVolume(
        csi_pb2.ControllerGetVolumeRequest(volume_id=min(ids)), timeout=30
    )
    assert got.volume.volume_id == min(ids)
    assert dict(got.volume.accessible_topology[0].segments) == {ZONE_KEY: fast.zones[1]}
    seen: list[str] = []
    token = ""
    for _ in range(100):  # a paging bug must not loop forever
        page = daemon.controller.ListVolumes(
            csi_pb2.ListVolumesRequest(max_entries=2, starting_token=token), timeout=30
        )
        assert len(page.entries) <= 2
        seen += [e.volume.volume_id for e in page.entries]
        token = page.next_token
        if not token:
            break
    else:
        pytest.fail("the listing never ended")
    assert ids <= set(seen)
    assert len(seen) == len(set(seen))


# --- bad input ------------------------------------------------------------------------------


def test_create_bad_input_is_invalid_argument(daemon: Daemon, fast: EmulatorInfo) -> None:
    create = daemon.controller.CreateVolume
    assert code_of(create, create_request(""), timeout=30) == grpc.StatusCode.INVALID_ARGUMENT
    too_small = create_request("bad-capacity", 40, limit_gib=20)
    assert code_of(create, too_small, timeout=30) == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        create(create_request("bad-param", params={"diskTpye": "cloud_ssd"}), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "diskTpye" in err.value.details()


@pytest.mark.parametrize("volume_id", MALFORMED_IDS)
def test_malformed_volume_ids_are_invalid_argument(daemon: Daemon, volume_id: str) -> None:
    ctl = daemon.controller
    calls = [
        (ctl.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id=volume_id)),
        (ctl.ControllerGetVolume, csi_pb2.ControllerGetVolumeRequest(volume_id=volume_id)),
        (
            ctl.ValidateVolumeCapabilities,
            csi_pb2.ValidateVolumeCapabilitiesRequest(
                volume_id=volume_id, volume_capabilities=[mount_cap()]
            ),
        ),
        (
            ctl.ControllerPublishVolume,
            csi_pb2.ControllerPublishVolumeRequest(
                volume_id=volume_id, node_id="i-x", volume_capability=mount_cap()
            ),
        ),
        (
            ctl.ControllerUnpublishVolume,
            csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id="i-x"),
        ),
    ]
    for call, request in calls:
        assert code_of(call, request, timeout=30) == grpc.StatusCode.INVALID_ARGUMENT, call


@pytest.mark.parametrize("volume_id", NAMELESS_IDS)
def test_ids_no_disk_can_have_never_reach_ecs(
    daemon: Daemon, fast: EmulatorInfo, volume_id: str
) -> None:
    """NOT_FOUND where the volume must exist, OK where it must be gone (csi-sanity's
    ``fake-vol-id-...``), answered by the driver without an ECS call."""
    ctl = daemon.controller
    before = fast.calls()
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id), timeout=30)
    ctl.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id="i-x"), timeout=30
    )
    for call, request in (
        (ctl.ControllerGetVolume, csi_pb2.ControllerGetVolumeRequest(volume_id=volume_id)),
        (
            ctl.ValidateVolumeCapabilities,
            csi_pb2.ValidateVolumeCapabilitiesRequest(
                volume_id=volume_id, volume_capabilities=[mount_cap()]
            ),
        ),
        (
            ctl.ControllerPublishVolume,
            csi_pb2.ControllerPublishVolumeRequest(
                volume_id=volume_id, node_id="i-x", volume_capability=mount_cap()
            ),
        ),
    ):
        assert code_of(call, request, timeout=30) == grpc.StatusCode.NOT_FOUND, call
    assert fast.calls() == before


def test_unknown_volume_is_not_found(daemon: Daemon) -> None:
    ctl = daemon.controller
    get = csi_pb2.ControllerGetVolumeRequest(volume_id=UNKNOWN_DISK)
    assert code_of(ctl.ControllerGetVolume, get, timeout=30) == grpc.StatusCode.NOT_FOUND
    validate = csi_pb2.ValidateVolumeCapabilitiesRequest(
        volume_id=UNKNOWN_DISK, volume_capabilities=[mount_cap()]
    )
    code = code_of(ctl.ValidateVolumeCapabilities, validate, timeout=30)
    assert code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("token", ["garbage", "v1:garbage"])
def test_list_with_a_bad_token_is_aborted(daemon: Daemon, token: str) -> None:
    request = csi_pb2.ListVolumesRequest(starting_token=token)
    assert code_of(daemon.controller.ListVolumes, request, timeout=30) == grpc.StatusCode.ABORTED
