"""Controller handlers against the in-memory cloud and the real shared waiter."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from csi_disk.categories import GIB
from csi_disk.cloud import port
from csi_disk.cloud.port import DiskRequest
from csi_disk.cloud.waiter import DiskWaiter
from csi_disk.config import Config
from csi_disk.controller import PUBLISH_SERIAL_KEY, ControllerService
from csi_disk.csi_pb import csi_pb2
from csi_disk.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)
from csi_disk.tokens import VOLUME_NAME_TAG, client_token
from csi_disk.topology import K8S_ZONE_KEY, ZONE_KEY
from tests.fakes import InMemoryCloud, ecs_error

Mode = csi_pb2.VolumeCapability.AccessMode
RPC = csi_pb2.ControllerServiceCapability.RPC
ZONE_H = "cn-hangzhou-h"
ZONE_I = "cn-hangzhou-i"


def mount_cap(mode: int = Mode.SINGLE_NODE_WRITER, fs: str = "") -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type=fs),
        access_mode=Mode(mode=mode),
    )


def block_cap(mode: int = Mode.SINGLE_NODE_WRITER) -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        block=csi_pb2.VolumeCapability.BlockVolume(), access_mode=Mode(mode=mode)
    )


def create_request(
    name: str = "pvc-1",
    required: int = 10 * GIB,
    limit: int = 0,
    params: dict[str, str] | None = None,
    caps: list[csi_pb2.VolumeCapability] | None = None,
    preferred: list[str] | None = None,
    requisite: list[str] | None = None,
) -> csi_pb2.CreateVolumeRequest:
    req = csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=required, limit_bytes=limit),
        volume_capabilities=caps if caps is not None else [mount_cap()],
        parameters=params or {},
    )
    if preferred is not None or requisite is not None:
        req.accessibility_requirements.CopyFrom(
            csi_pb2.TopologyRequirement(
                preferred=[csi_pb2.Topology(segments={ZONE_KEY: z}) for z in preferred or []],
                requisite=[csi_pb2.Topology(segments={K8S_ZONE_KEY: z}) for z in requisite or []],
            )
        )
    return req


@pytest.fixture
def cloud() -> InMemoryCloud:
    c = InMemoryCloud()
    c.add_instance("i-h1", ZONE_H)
    c.add_instance("i-h2", ZONE_H)
    c.add_instance("i-i1", ZONE_I)
    return c


@pytest.fixture
def waiter(cloud: InMemoryCloud) -> Iterator[DiskWaiter]:
    w = DiskWaiter(cloud, interval=0.005, collect_window=0.001)
    yield w
    w.close()


def make(cloud: InMemoryCloud, waiter: DiskWaiter, **config: object) -> ControllerService:
    settings: dict[str, object] = {"attach_mode": "controller", "operation_timeout": 10.0}
    settings.update(config)
    return ControllerService(Config(**settings), cloud, waiter, default_zone=ZONE_H)  # type: ignore[arg-type]


@pytest.fixture
def ctl(cloud: InMemoryCloud, waiter: DiskWaiter) -> ControllerService:
    return make(cloud, waiter)


def created_requests(cloud: InMemoryCloud) -> list[DiskRequest]:
    return [args[0] for name, args in cloud.log if name == "create_disk"]  # type: ignore[misc]


# --- CreateVolume -----------------------------------------------------------------------


def test_create_default_volume(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    resp = ctl.CreateVolume(create_request(preferred=[ZONE_I], requisite=[ZONE_H, ZONE_I]))
    vol = resp.volume
    disk = cloud.disk(vol.volume_id)
    assert disk.zone == ZONE_I and disk.category == "cloud_essd"
    assert vol.capacity_bytes == 20 * GIB == disk.size_gib * GIB
    assert [dict(t.segments) for t in vol.accessible_topology] == [{ZONE_KEY: ZONE_I}]
    assert vol.volume_context["type"] == "cloud_essd"
    assert disk.tags[VOLUME_NAME_TAG] == "pvc-1"
    (req,) = created_requests(cloud)
    assert req.client_token == client_token("pvc-1") == "n:pvc-1"


def test_create_without_topology_uses_zone_param_then_own_zone(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    a = ctl.CreateVolume(create_request(name="a", params={"zoneId": ZONE_I})).volume
    b = ctl.CreateVolume(create_request(name="b")).volume
    assert cloud.disk(a.volume_id).zone == ZONE_I
    assert cloud.disk(b.volume_id).zone == ZONE_H


def test_create_zone_param_outside_requisite_is_invalid(ctl: ControllerService) -> None:
    with pytest.raises(InvalidArgument, match="zoneId"):
        ctl.CreateVolume(create_request(params={"zoneId": ZONE_I}, requisite=[ZONE_H]))


@pytest.mark.parametrize(
    ("req", "match"),
    [
        (create_request(name=""), "name"),
        (create_request(name="x" * 129), "name"),
        (create_request(caps=[]), "volume_capabilities"),
        (create_request(caps=[csi_pb2.VolumeCapability(access_mode=Mode(mode=1))]), "access"),
        (create_request(caps=[mount_cap(Mode.UNKNOWN)]), "UNKNOWN"),
        (create_request(caps=[mount_cap(fs="ntfs")]), "ntfs"),
        (create_request(caps=[mount_cap(Mode.MULTI_NODE_MULTI_WRITER)]), "block"),
        (create_request(caps=[mount_cap(Mode.MULTI_NODE_READER_ONLY)]), "block"),
        (create_request(caps=[block_cap(Mode.MULTI_NODE_MULTI_WRITER)]), "multiAttach"),
        (create_request(required=-1), "negative"),
        (create_request(required=10 * GIB, limit=5 * GIB), "exceeds"),
        (create_request(params={"tpye": "x"}), "tpye"),
        (create_request(params={"encrypted": "maybe"}), "encrypted=maybe"),
        (create_request(params={"regionId": "cn-beijing"}), "regionId"),
    ],
)
def test_create_bad_input_is_invalid(
    ctl: ControllerService, cloud: InMemoryCloud, req: csi_pb2.CreateVolumeRequest, match: str
) -> None:
    with pytest.raises(InvalidArgument, match=match):
        ctl.CreateVolume(req)
    assert cloud.calls["create_disk"] == 0


def test_create_accepts_single_node_multi_writer_and_multi_node_block(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    ctl.CreateVolume(create_request(name="a", caps=[mount_cap(Mode.SINGLE_NODE_MULTI_WRITER)]))
    vol = ctl.CreateVolume(
        create_request(
            name="b",
            caps=[block_cap(Mode.MULTI_NODE_MULTI_WRITER)],
            params={"multiAttach": "true"},
        )
    ).volume
    assert cloud.disk(vol.volume_id).multi_attach
    assert vol.volume_context["multiAttach"] == "true"


def test_create_from_another_volume_is_unimplemented(ctl: ControllerService) -> None:
    req = create_request()
    req.volume_content_source.volume.volume_id = "d-1"  # cloning; snapshots: test_snapshots
    with pytest.raises(Unimplemented):
        ctl.CreateVolume(req)


def test_create_falls_back_on_no_stock(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    cloud.stock[(ZONE_H, "cloud_essd")] = 0
    vol = ctl.CreateVolume(create_request()).volume
    assert cloud.disk(vol.volume_id).category == "cloud_ssd"
    assert vol.volume_context["type"] == "cloud_ssd"
    assert [r.category for r in created_requests(cloud)] == ["cloud_essd", "cloud_ssd"]


def test_create_falls_back_on_unsupported_category_and_level(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    cloud.unsupported.add((ZONE_H, "cloud_essd", "PL0"))
    cloud.unsupported.add((ZONE_H, "cloud_auto"))
    vol = ctl.CreateVolume(
        create_request(
            required=GIB,
            params={"type": "cloud_essd,cloud_auto,cloud_essd_entry", "performanceLevel": "PL0"},
        )
    ).volume
    disk = cloud.disk(vol.volume_id)
    assert (disk.category, disk.size_gib) == ("cloud_essd_entry", 10)
    assert [r.category for r in created_requests(cloud)] == [
        "cloud_essd",
        "cloud_auto",
        "cloud_essd_entry",
    ]


def test_create_all_categories_exhausted(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    for category in ("cloud_essd", "cloud_ssd", "cloud_efficiency"):
        cloud.stock[(ZONE_H, category)] = 0
    with pytest.raises(ResourceExhausted, match="cloud_efficiency"):
        ctl.CreateVolume(create_request())
    assert cloud.disks == {}


def test_create_other_errors_do_not_fall_back(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    cloud.fail("create_disk", ecs_error("Throttling.User"))
    with pytest.raises(Unavailable):
        ctl.CreateVolume(create_request())
    assert cloud.calls["create_disk"] == 1


def test_create_sizes(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    a = ctl.CreateVolume(create_request(name="a", required=GIB + 1, params={"type": "cloud_auto"}))
    assert a.volume.capacity_bytes == 2 * GIB
    b = ctl.CreateVolume(create_request(name="b", required=GIB, params={"type": "cloud_ssd"}))
    assert b.volume.capacity_bytes == 20 * GIB
    c = ctl.CreateVolume(
        create_request(
            name="c",
            required=GIB,
            params={"type": "cloud_ssd,cloud_auto", "volumeSizeAutoAvailable": "false"},
        )
    )
    assert cloud.disk(c.volume.volume_id).category == "cloud_auto"
    assert c.volume.capacity_bytes == GIB


def test_create_size_impossible_is_out_of_range(ctl: ControllerService) -> None:
    with pytest.raises(OutOfRange):
        ctl.CreateVolume(create_request(required=GIB, limit=2 * GIB, params={"type": "cloud_ssd"}))
    with pytest.raises(OutOfRange):
        ctl.CreateVolume(create_request(name="big", required=70000 * GIB))


def test_create_is_idempotent(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    first = ctl.CreateVolume(create_request())
    second = ctl.CreateVolume(create_request())
    assert first == second
    assert cloud.calls["create_disk"] == 1


@pytest.mark.parametrize(
    "changed",
    [
        {"required": 100 * GIB},
        {"params": {"type": "cloud_ssd"}},
        {"params": {"encrypted": "true"}},
        {"params": {"zoneId": ZONE_I}},
        {"params": {"type": "cloud_essd", "performanceLevel": "PL0"}},
    ],
)
def test_create_same_name_different_volume_is_already_exists(
    ctl: ControllerService, cloud: InMemoryCloud, changed: dict[str, object]
) -> None:
    ctl.CreateVolume(create_request())
    with pytest.raises(AlreadyExists, match="pvc-1"):
        ctl.CreateVolume(create_request(**changed))  # type: ignore[arg-type]
    assert len(cloud.disks) == 1


def test_create_mismatched_token_with_matching_disk_returns_it(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    existing = cloud.add_disk(size_gib=20, zone=ZONE_H, tags={VOLUME_NAME_TAG: "pvc-1"})
    # The tag lookup before CreateDisk misses it (eventual consistency): simulate by
    # failing CreateDisk with the mismatch only after hiding and restoring the disk.
    hidden = cloud.disks.pop(existing.id)

    def restore_then_mismatch(request: DiskRequest) -> str:
        cloud.disks[hidden.id] = hidden
        raise ecs_error("IdempotentParameterMismatch")

    cloud.create_disk = restore_then_mismatch  # type: ignore[method-assign]
    vol = ctl.CreateVolume(create_request()).volume
    assert vol.volume_id == existing.id


def test_create_mismatched_token_without_disk_retries_with_a_derived_token(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    stale = DiskRequest(zone=ZONE_H, category="cloud_ssd", size_gib=99, client_token="n:pvc-1")
    cloud.tokens["n:pvc-1"] = (stale, "d-gone")
    vol = ctl.CreateVolume(create_request()).volume
    assert cloud.disk(vol.volume_id).tags[VOLUME_NAME_TAG] == "pvc-1"
    first, derived = [r.client_token for r in created_requests(cloud)]
    assert first == "n:pvc-1"
    assert derived.startswith("h:")  # never empty: the cloud port refuses a tokenless create


def test_create_waits_out_creating(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    cloud.latency = 3
    vol = ctl.CreateVolume(create_request()).volume
    assert cloud.disk(vol.volume_id).status == port.AVAILABLE


def test_create_same_name_in_flight_is_aborted(ctl: ControllerService) -> None:
    with ctl.name_locks.hold("pvc-1"), pytest.raises(Aborted):
        ctl.CreateVolume(create_request())


def test_create_passes_parameters_to_ecs(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    ctl.CreateVolume(
        create_request(
            params={
                "type": "cloud_auto",
                "encrypted": "true",
                "kmsKeyId": "key-1",
                "resourceGroupId": "rg-1",
                "provisionedIops": "3000",
                "burstingEnabled": "true",
                "diskTags": "team:db",
                "csi.storage.k8s.io/pvc/name": "data",
            }
        )
    )
    (req,) = created_requests(cloud)
    assert (req.category, req.encrypted, req.kms_key_id) == ("cloud_auto", True, "key-1")
    assert (req.resource_group_id, req.provisioned_iops, req.bursting_enabled) == (
        "rg-1",
        3000,
        True,
    )
    assert req.tags == {
        "team": "db",
        "kubernetes.io/created-for/pvc/name": "data",
        VOLUME_NAME_TAG: "pvc-1",
    }


def test_long_name_gets_hashed_token_and_full_tag(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    name = "pvc-" + "x" * 100
    vol = ctl.CreateVolume(create_request(name=name)).volume
    (req,) = created_requests(cloud)
    assert req.client_token.startswith("h:")
    assert cloud.disk(vol.volume_id).tags[VOLUME_NAME_TAG] == name


# --- DeleteVolume -----------------------------------------------------------------------


def test_delete_bad_and_missing_ids(ctl: ControllerService) -> None:
    for bad in ("", "../etc", "d-ABC", "x" * 200):
        with pytest.raises(InvalidArgument):
            ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=bad))
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id="d-doesnotexist"))


def test_delete_removes_disk(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    disk = cloud.add_disk()
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=disk.id))
    assert disk.id not in cloud.disks
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=disk.id))


def test_delete_waits_out_creating(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    cloud.latency = 3
    disk_id = cloud.create_disk(
        DiskRequest(zone=ZONE_H, category="cloud_ssd", size_gib=20, client_token="")
    )
    assert cloud.disk(disk_id).status == port.CREATING
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=disk_id))
    assert disk_id not in cloud.disks


def test_delete_refuses_disk_on_running_instance(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-h1",))
    with pytest.raises(FailedPrecondition, match="i-h1"):
        ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=disk.id))
    assert disk.id in cloud.disks


def test_delete_detaches_from_stopped_instance(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    cloud.set_instance_status("i-h1", port.STOPPED)
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-h1",))
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=disk.id))
    assert disk.id not in cloud.disks
    assert cloud.calls["detach_disk"] == 1


def test_delete_refusal_detaches_from_no_holder(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    # One holder is stopped, the other runs: refusing after detaching the first would
    # leave the disk half released, so the running one is found before any detach.
    cloud.set_instance_status("i-h1", port.STOPPED)
    disk = cloud.add_disk(multi_attach=True, status=port.IN_USE, attachments=("i-h1", "i-h2"))
    with pytest.raises(FailedPrecondition, match="i-h2"):
        ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=disk.id))
    assert cloud.calls["detach_disk"] == 0
    assert cloud.disk(disk.id).attachments == ("i-h1", "i-h2")


def test_delete_detaches_when_configured(cloud: InMemoryCloud, waiter: DiskWaiter) -> None:
    ctl = make(cloud, waiter, detach_before_delete=True)
    cloud.latency = 2
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-h1",))
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=disk.id))
    assert disk.id not in cloud.disks


def test_delete_in_flight_is_aborted(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    disk = cloud.add_disk()
    with ctl.volume_locks.hold(disk.id), pytest.raises(Aborted):
        ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=disk.id))


# --- ControllerPublish / Unpublish ------------------------------------------------------


def publish(
    ctl: ControllerService, volume_id: str, node: str, cap: csi_pb2.VolumeCapability | None = None
) -> csi_pb2.ControllerPublishVolumeResponse:
    return ctl.ControllerPublishVolume(
        csi_pb2.ControllerPublishVolumeRequest(
            volume_id=volume_id, node_id=node, volume_capability=cap or mount_cap()
        )
    )


def unpublish(ctl: ControllerService, volume_id: str, node: str = "") -> None:
    ctl.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=node)
    )


def test_publish_unimplemented_in_node_attach_mode(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    ctl = make(cloud, waiter, attach_mode="node")
    disk = cloud.add_disk()
    with pytest.raises(Unimplemented):
        publish(ctl, disk.id, "i-h1")
    with pytest.raises(Unimplemented):
        unpublish(ctl, disk.id, "i-h1")


def test_publish_attaches_and_returns_serial(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    cloud.latency = 2
    disk = cloud.add_disk()
    resp = publish(ctl, disk.id, "i-h1")
    assert resp.publish_context[PUBLISH_SERIAL_KEY] == disk.id.removeprefix("d-")
    assert cloud.disk(disk.id).attachments == ("i-h1",)
    assert cloud.disk(disk.id).status == port.IN_USE
    publish(ctl, disk.id, "i-h1")
    assert cloud.calls["attach_disk"] == 1


def test_publish_bad_input(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    disk = cloud.add_disk()
    with pytest.raises(InvalidArgument):
        publish(ctl, "bad/id", "i-h1")
    with pytest.raises(InvalidArgument, match="node_id"):
        publish(ctl, disk.id, "")
    with pytest.raises(InvalidArgument, match="volume_capability"):
        ctl.ControllerPublishVolume(
            csi_pb2.ControllerPublishVolumeRequest(volume_id=disk.id, node_id="i-h1")
        )
    with pytest.raises(InvalidArgument, match="multi"):
        publish(ctl, disk.id, "i-h1", block_cap(Mode.MULTI_NODE_MULTI_WRITER))
    assert cloud.calls["attach_disk"] == 0


def test_publish_unknown_volume_or_node_is_not_found(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    with pytest.raises(NotFound, match="volume"):
        publish(ctl, "d-missing", "i-h1")
    disk = cloud.add_disk()
    with pytest.raises(NotFound, match="node"):
        publish(ctl, disk.id, "i-nope")


def test_publish_zone_mismatch(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    disk = cloud.add_disk(zone=ZONE_H)
    with pytest.raises(FailedPrecondition, match=ZONE_I):
        publish(ctl, disk.id, "i-i1")


def test_publish_refuses_disk_held_by_running_instance(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-h2",))
    with pytest.raises(FailedPrecondition, match="i-h2"):
        publish(ctl, disk.id, "i-h1")
    assert cloud.disk(disk.id).attachments == ("i-h2",)


def test_publish_takes_over_from_stopped_instance(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    cloud.set_instance_status("i-h2", port.STOPPED)
    cloud.latency = 1
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-h2",))
    publish(ctl, disk.id, "i-h1")
    assert cloud.disk(disk.id).attachments == ("i-h1",)


def test_publish_takes_over_from_running_instance_when_allowed(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    ctl = make(cloud, waiter, allow_takeover=True)
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-h2",))
    publish(ctl, disk.id, "i-h1")
    assert cloud.disk(disk.id).attachments == ("i-h1",)


def test_publish_multi_attach_block_to_two_nodes(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    disk = cloud.add_disk(multi_attach=True)
    cap = block_cap(Mode.MULTI_NODE_MULTI_WRITER)
    publish(ctl, disk.id, "i-h1", cap)
    publish(ctl, disk.id, "i-h2", cap)
    assert set(cloud.disk(disk.id).attachments) == {"i-h1", "i-h2"}


def test_publish_instance_limit_is_resource_exhausted(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    cloud.disk_quantity["ecs.g7.large"] = 1
    a, b = cloud.add_disk(), cloud.add_disk()
    publish(ctl, a.id, "i-h1")
    with pytest.raises(ResourceExhausted):
        publish(ctl, b.id, "i-h1")


def test_publish_stuck_attach_is_abandoned(cloud: InMemoryCloud, waiter: DiskWaiter) -> None:
    ctl = make(cloud, waiter, operation_timeout=0.3)
    cloud.stuck_attach.add("i-h1")
    disk = cloud.add_disk()
    with pytest.raises(Aborted, match="undone"):
        publish(ctl, disk.id, "i-h1")
    assert cloud.calls["detach_disk"] == 1
    assert not cloud.disk(disk.id).attached_to("i-h1")


def test_concurrent_attaches_to_one_instance_are_queued(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    cloud.latency = 3
    disks = [cloud.add_disk() for _ in range(4)]
    errors: list[BaseException] = []

    def attach(disk_id: str) -> None:
        try:
            publish(ctl, disk_id, "i-h1")
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=attach, args=(d.id,)) for d in disks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(cloud.disk(d.id).attached_to("i-h1") for d in disks)


def test_unpublish(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    cloud.latency = 1
    disk = cloud.add_disk(multi_attach=True, status=port.IN_USE, attachments=("i-h1", "i-h2"))
    unpublish(ctl, disk.id, "i-h1")
    assert cloud.disk(disk.id).attachments == ("i-h2",)
    unpublish(ctl, disk.id, "i-h1")  # not attached there any more: OK
    unpublish(ctl, disk.id)  # no node: from every node
    assert cloud.disk(disk.id).attachments == ()
    assert cloud.disk(disk.id).status == port.AVAILABLE
    unpublish(ctl, "d-missing", "i-h1")
    with pytest.raises(InvalidArgument):
        unpublish(ctl, "", "i-h1")


# --- queries ----------------------------------------------------------------------------


def test_validate_volume_capabilities(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    disk = cloud.add_disk()
    ok = ctl.ValidateVolumeCapabilities(
        csi_pb2.ValidateVolumeCapabilitiesRequest(
            volume_id=disk.id, volume_capabilities=[mount_cap()]
        )
    )
    assert list(ok.confirmed.volume_capabilities) == [mount_cap()]
    refused = ctl.ValidateVolumeCapabilities(
        csi_pb2.ValidateVolumeCapabilitiesRequest(
            volume_id=disk.id, volume_capabilities=[block_cap(Mode.MULTI_NODE_MULTI_WRITER)]
        )
    )
    assert not refused.HasField("confirmed") and "multi" in refused.message
    with pytest.raises(NotFound):
        ctl.ValidateVolumeCapabilities(
            csi_pb2.ValidateVolumeCapabilitiesRequest(
                volume_id="d-missing", volume_capabilities=[mount_cap()]
            )
        )
    with pytest.raises(InvalidArgument):
        ctl.ValidateVolumeCapabilities(csi_pb2.ValidateVolumeCapabilitiesRequest(volume_id=disk.id))


def test_list_volumes_pages_driver_disks(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    ours = [cloud.add_disk(tags={VOLUME_NAME_TAG: "v0"}, status=port.IN_USE, attachments=("i-h1",))]
    ours += [cloud.add_disk(tags={VOLUME_NAME_TAG: f"v{i}"}) for i in range(1, 5)]
    cloud.add_disk(tags={"other": "x"})
    seen: dict[str, list[str]] = {}
    token = ""
    pages = 0
    while True:
        resp = ctl.ListVolumes(csi_pb2.ListVolumesRequest(max_entries=2, starting_token=token))
        assert len(resp.entries) <= 2
        for e in resp.entries:
            seen[e.volume.volume_id] = list(e.status.published_node_ids)
        pages += 1
        token = resp.next_token
        if not token:
            break
    assert set(seen) == {d.id for d in ours}
    assert seen[ours[0].id] == ["i-h1"]
    assert pages >= 3


def test_list_volumes_bad_input(ctl: ControllerService) -> None:
    with pytest.raises(Aborted):
        ctl.ListVolumes(csi_pb2.ListVolumesRequest(starting_token="garbage"))
    with pytest.raises(Aborted):
        ctl.ListVolumes(csi_pb2.ListVolumesRequest(starting_token="v1:notanumber"))
    with pytest.raises(InvalidArgument):
        ctl.ListVolumes(csi_pb2.ListVolumesRequest(max_entries=-1))


def test_get_volume(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    disk = cloud.add_disk(size_gib=30, status=port.IN_USE, attachments=("i-h1",))
    resp = ctl.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id=disk.id))
    assert resp.volume.capacity_bytes == 30 * GIB
    assert list(resp.status.published_node_ids) == ["i-h1"]
    assert not resp.status.volume_condition.abnormal
    with pytest.raises(NotFound):
        ctl.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id="d-missing"))


@pytest.mark.parametrize("mode", ["controller", "node"])
def test_capabilities(cloud: InMemoryCloud, waiter: DiskWaiter, mode: str) -> None:
    ctl = make(cloud, waiter, attach_mode=mode)
    resp = ctl.ControllerGetCapabilities(csi_pb2.ControllerGetCapabilitiesRequest())
    types = {c.rpc.type for c in resp.capabilities}
    assert {
        RPC.CREATE_DELETE_VOLUME,
        RPC.LIST_VOLUMES,
        RPC.GET_VOLUME,
        RPC.LIST_VOLUMES_PUBLISHED_NODES,
        RPC.VOLUME_CONDITION,
        RPC.SINGLE_NODE_MULTI_WRITER,
    } <= types
    assert (RPC.PUBLISH_UNPUBLISH_VOLUME in types) == (mode == "controller")
