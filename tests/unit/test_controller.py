"""Controller handlers against the in-memory cloud and the real shared waiter."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from csi_disk.capabilities import SERIAL_KEY
from csi_disk.categories import GIB
from csi_disk.cloud import port
from csi_disk.cloud.port import DiskRequest
from csi_disk.cloud.waiter import DiskWaiter
from csi_disk.controller import ControllerService
from csi_disk.csi_pb import csi_pb2
from csi_disk.errors import (
    Aborted,
    AlreadyExists,
    DeadlineExceeded,
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
from tests.unit.controller_helpers import ZONE as ZONE_H  # the controller's default zone
from tests.unit.controller_helpers import cloud_with, running_waiter
from tests.unit.controller_helpers import controller as make

Mode = csi_pb2.VolumeCapability.AccessMode
RPC = csi_pb2.ControllerServiceCapability.RPC
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
    return cloud_with(("i-h1", ZONE_H), ("i-h2", ZONE_H), ("i-i1", ZONE_I))


@pytest.fixture
def waiter(cloud: InMemoryCloud) -> Iterator[DiskWaiter]:
    with running_waiter(cloud, 0.005, collect_window=0.001) as w:
        yield w


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
        (create_request(params={"encrypted": "maybe"}), "encrypted=.maybe."),
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


def test_create_from_another_volume_is_an_invalid_argument(ctl: ControllerService) -> None:
    """The spec's code for a source the plugin cannot create from (no CLONE_VOLUME)."""
    req = create_request()
    req.volume_content_source.volume.volume_id = "d-1"  # cloning; snapshots: test_snapshots
    with pytest.raises(InvalidArgument):
        ctl.CreateVolume(req)


def test_create_falls_back_on_no_stock(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    """The stock read predates the zone running out: CreateDisk's NoStock moves on to the
    next category, and the read learns it at once."""
    ctl.capacity.stock()
    cloud.stock[(ZONE_H, "cloud_essd")] = 0
    vol = ctl.CreateVolume(create_request()).volume
    assert cloud.disk(vol.volume_id).category == "cloud_ssd"
    assert vol.volume_context["type"] == "cloud_ssd"
    assert [r.category for r in created_requests(cloud)] == ["cloud_essd", "cloud_ssd"]
    stock = ctl.capacity.stock()
    assert stock is not None and not stock.offer(ZONE_H, "cloud_essd").in_stock  # type: ignore[union-attr]
    assert cloud.calls["available_disks"] == 2  # one read (zones, region), still fresh


def test_create_skips_what_the_stock_read_says_is_gone(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    cloud.stock[(ZONE_H, "cloud_essd")] = 0
    cloud.unsupported.add((ZONE_H, "cloud_ssd"))
    vol = ctl.CreateVolume(create_request()).volume
    assert [r.category for r in created_requests(cloud)] == ["cloud_efficiency"]
    assert cloud.disk(vol.volume_id).category == "cloud_efficiency"


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
    # The stock read says the zone sells no cloud_auto; that it sells no PL0 ESSD only
    # CreateDisk can tell.
    assert [r.category for r in created_requests(cloud)] == ["cloud_essd", "cloud_essd_entry"]


def test_create_all_categories_exhausted(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    for category in ("cloud_essd", "cloud_ssd", "cloud_efficiency"):
        cloud.stock[(ZONE_H, category)] = 0
    with pytest.raises(ResourceExhausted, match="cloud_efficiency"):
        ctl.CreateVolume(create_request())
    assert cloud.disks == {}


def exhaust(cloud: InMemoryCloud, zone: str, *cats: str) -> None:
    for category in cats or ("cloud_essd", "cloud_ssd", "cloud_efficiency"):
        cloud.stock[(zone, category)] = 0


def test_create_falls_back_to_the_next_zone(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    """Immediate binding: the provisioner's zone order is fixed, so the first zone being out
    of stock must not make the volume impossible forever."""
    exhaust(cloud, ZONE_H)
    vol = ctl.CreateVolume(create_request(requisite=[ZONE_H, ZONE_I])).volume
    disk = cloud.disk(vol.volume_id)
    assert (disk.zone, disk.category) == (ZONE_I, "cloud_essd")
    assert [dict(t.segments) for t in vol.accessible_topology] == [{ZONE_KEY: ZONE_I}]
    assert [(r.zone, r.category) for r in created_requests(cloud)] == [(ZONE_I, "cloud_essd")]
    assert {r.client_token for r in created_requests(cloud)} == {client_token("pvc-1")}


def test_create_falls_back_to_the_next_zone_after_refusals(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    """The same with a stock read from before the first zone ran out: each refusal moves
    on, category by category, then zone by zone, under one client token."""
    ctl.capacity.stock()
    exhaust(cloud, ZONE_H)
    vol = ctl.CreateVolume(create_request(requisite=[ZONE_H, ZONE_I])).volume
    assert cloud.disk(vol.volume_id).zone == ZONE_I
    assert [(r.zone, r.category) for r in created_requests(cloud)] == [
        (ZONE_H, "cloud_essd"),
        (ZONE_H, "cloud_ssd"),
        (ZONE_H, "cloud_efficiency"),
        (ZONE_I, "cloud_essd"),
    ]
    assert {r.client_token for r in created_requests(cloud)} == {client_token("pvc-1")}


def test_create_tries_every_category_in_a_zone_before_the_next_zone(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    exhaust(cloud, ZONE_H, "cloud_essd")
    vol = ctl.CreateVolume(create_request(preferred=[ZONE_H], requisite=[ZONE_I, ZONE_H])).volume
    assert (cloud.disk(vol.volume_id).zone, cloud.disk(vol.volume_id).category) == (
        ZONE_H,
        "cloud_ssd",
    )


def test_create_every_zone_exhausted(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    exhaust(cloud, ZONE_H)
    exhaust(cloud, ZONE_I)
    with pytest.raises(ResourceExhausted) as err:
        ctl.CreateVolume(create_request(requisite=[ZONE_H, ZONE_I]))
    assert ZONE_H in err.value.message and ZONE_I in err.value.message
    # Out of stock by the read goes last rather than nowhere: a stale read must not refuse.
    assert cloud.calls["create_disk"] == 6 and cloud.disks == {}


def test_create_strict_topology_stays_in_its_zone(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    exhaust(cloud, ZONE_H)
    with pytest.raises(ResourceExhausted):
        ctl.CreateVolume(create_request(preferred=[ZONE_H], requisite=[ZONE_H]))
    assert {r.zone for r in created_requests(cloud)} <= {ZONE_H}
    assert cloud.disks == {}


@pytest.mark.parametrize("tag_lookup_lags", [False, True])
def test_create_retry_after_zone_fallback_finds_the_disk(
    cloud: InMemoryCloud, waiter: DiskWaiter, tag_lookup_lags: bool
) -> None:
    """The reply was lost; on the retry the first zone has stock again. The token is bound
    to the second zone's arguments, so the first zone answers IdempotentParameterMismatch
    instead of making a second disk, and the retry finds the first disk."""
    exhaust(cloud, ZONE_H)
    request = create_request(requisite=[ZONE_H, ZONE_I])
    first = make(cloud, waiter).CreateVolume(request).volume
    cloud.stock.clear()
    if tag_lookup_lags:
        cloud.find_disks = lambda **_: port.Page([])  # type: ignore[method-assign]
    retry = make(cloud, waiter).CreateVolume(request).volume  # a new process: nothing cached
    assert retry.volume_id == first.volume_id
    assert len(cloud.disks) == 1 and cloud.disk(retry.volume_id).zone == ZONE_I
    assert {r.client_token for r in created_requests(cloud)} == {client_token("pvc-1")}


def test_create_reused_name_falls_back_across_zones_idempotently(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    """A name whose disk was deleted comes back with other arguments: the derived token is
    the same whichever zone has stock, so a retry never makes a second disk."""
    stale = DiskRequest(zone=ZONE_H, category="cloud_ssd", size_gib=99, client_token="n:pvc-1")
    cloud.tokens["n:pvc-1"] = (stale, "d-gone")
    exhaust(cloud, ZONE_H)
    request = create_request(requisite=[ZONE_H, ZONE_I])
    first = make(cloud, waiter).CreateVolume(request).volume
    assert cloud.disk(first.volume_id).zone == ZONE_I
    cloud.stock.clear()
    cloud.find_disks = lambda **_: port.Page([])  # type: ignore[method-assign]
    retry = make(cloud, waiter).CreateVolume(request).volume
    assert retry.volume_id == first.volume_id and len(cloud.disks) == 1


def test_create_unknown_zone_is_invalid_argument(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    """NOT_FOUND from CreateVolume would claim the content source is missing."""
    with pytest.raises(InvalidArgument, match="cn-hangzhou-x") as err:
        ctl.CreateVolume(create_request(params={"zoneId": "cn-hangzhou-x"}))
    assert "zoneId" in err.value.message
    assert cloud.disks == {}


def test_create_requisite_without_zone_key_is_invalid(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    req = create_request()
    req.accessibility_requirements.requisite.add().segments["example.com/rack"] = "r1"
    with pytest.raises(InvalidArgument, match="requisite"):
        ctl.CreateVolume(req)
    assert cloud.calls["create_disk"] == 0


@pytest.mark.parametrize(
    "name",
    [
        "a/../b\n\x00c",
        "pvc-1\nINFO forged line",
        "pvc-1\r",
        "pvc-\u2028x",
        "pvc-\u202ex",
        "\x7f",
        "\u00e9" * 65,  # 130 bytes
    ],
)
def test_create_refuses_names_that_could_forge_logs_or_tags(
    ctl: ControllerService,
    cloud: InMemoryCloud,
    caplog: pytest.LogCaptureFixture,
    name: str,
) -> None:
    caplog.set_level("DEBUG")
    with pytest.raises(InvalidArgument, match="name") as err:
        ctl.CreateVolume(create_request(name=name))
    assert cloud.calls["create_disk"] == 0 and cloud.calls["find_disks"] == 0
    assert name not in err.value.message
    assert all(name not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "name",
    ["pvc-0d6e3c2a-7a5e-4c6b-9d0e-2f0b1b7e9a11", "x" * 128, "数据卷-1", "a b:c/d", " spaced "],
)
def test_create_accepts_printable_names(
    ctl: ControllerService, cloud: InMemoryCloud, name: str
) -> None:
    vol = ctl.CreateVolume(create_request(name=name)).volume
    assert cloud.disk(vol.volume_id).tags[VOLUME_NAME_TAG] == name


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"resourceGroupId": "rg-x/../y"}, "resourceGroupId"),
        ({"encrypted": "true", "kmsKeyId": "k\x00"}, "kmsKeyId"),
        ({"type": "cloud_auto", "provisionedIops": "\u0663\u0660\u0660\u0660"}, "provisionedIops"),
        ({"type": "cloud_auto", "provisionedIops": "99999999"}, "provisionedIops"),
        ({"zoneId": "cn-hangzhou-h/.."}, "zoneId"),
    ],
)
def test_create_checks_parameter_shapes_before_ecs(
    ctl: ControllerService, cloud: InMemoryCloud, params: dict[str, str], match: str
) -> None:
    with pytest.raises(InvalidArgument, match=match):
        ctl.CreateVolume(create_request(params=params))
    assert cloud.calls["create_disk"] == 0


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
    *first, derived = [r.client_token for r in created_requests(cloud)]
    # Every attempt is asked under the name's token before a derived one is used.
    assert first == ["n:pvc-1"] * 3
    assert derived.startswith("h:")  # never empty: the cloud port refuses a tokenless create
    # A retry (new process: nothing remembered; tag lookup lagging) finds the same disk.
    cloud.find_disks = lambda **_: port.Page([])  # type: ignore[method-assign]
    again = make(cloud, ctl.disks.waiter).CreateVolume(create_request()).volume
    assert again.volume_id == vol.volume_id and len(cloud.disks) == 1


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


def test_delete_bad_and_missing_ids(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    for bad in ("", "x" * 200, "d-\n"):
        with pytest.raises(InvalidArgument):
            ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=bad))
    # No disk can have these ids: deleted already, without asking ECS.
    for nameless in ("../etc", "d-ABC", "fake-vol-id-1"):
        ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=nameless))
    assert sum(cloud.calls.values()) == 0
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id="d-doesnotexist"))


def test_delete_removes_disk(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    disk = cloud.add_disk()
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=disk.id))
    assert disk.id not in cloud.disks
    # A disk nothing holds costs one DeleteDisk and nothing else.
    assert dict(cloud.calls) == {"delete_disk": 1}
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=disk.id))
    assert dict(cloud.calls) == {"delete_disk": 2}  # gone: ECS says so, and that is OK


def test_delete_waits_out_creating(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    cloud.latency = 3
    disk_id = cloud.create_disk(
        DiskRequest(zone=ZONE_H, category="cloud_ssd", size_gib=20, client_token="")
    )
    assert cloud.disk(disk_id).status == port.CREATING
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=disk_id))
    assert disk_id not in cloud.disks
    # Refused while Creating: one look, the shared waiter's polls, and DeleteDisk again.
    assert cloud.calls["delete_disk"] == 2 and cloud.asked("describe_disks") == 1


def test_delete_refuses_disk_on_running_instance(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    disk = cloud.add_disk(status=port.IN_USE, attachments=("i-h1",))
    with pytest.raises(FailedPrecondition, match="i-h1"):
        ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=disk.id))
    assert disk.id in cloud.disks
    assert cloud.calls["detach_disk"] == 0


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
    with ctl.disks.locks.hold(disk.id), pytest.raises(Aborted):
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
    # Under this driver's key and the upstream Go driver's, for its node plugins.
    serial = disk.id.removeprefix("d-")
    assert dict(resp.publish_context) == {SERIAL_KEY: serial, "serialNumber": serial}
    assert cloud.disk(disk.id).attachments == ("i-h1",)
    assert cloud.disk(disk.id).status == port.IN_USE
    # The attach costs one AttachDisk; only the shared waiter looked at the disk.
    assert cloud.calls["attach_disk"] == 1
    assert cloud.asked("describe_disks") == 0 and cloud.calls["describe_instance"] == 0
    publish(ctl, disk.id, "i-h1")
    # Published again: ECS refuses the AttachDisk, one look finds it attached here.
    assert cloud.calls["attach_disk"] == 2 and cloud.asked("describe_disks") == 1
    assert cloud.disk(disk.id).attachments == ("i-h1",)


def test_publish_bad_input(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    disk = cloud.add_disk()
    with pytest.raises(InvalidArgument, match="volume_id"):
        publish(ctl, "", "i-h1")
    with pytest.raises(InvalidArgument, match="node_id"):
        publish(ctl, disk.id, "")
    # Required fields come first: an id that names nothing does not hide a missing one.
    with pytest.raises(InvalidArgument, match="node_id"):
        publish(ctl, "fake-vol-id", "")
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


def test_publish_of_a_stuck_attach_times_out_and_later_completes(
    cloud: InMemoryCloud, waiter: DiskWaiter
) -> None:
    ctl = make(cloud, waiter, operation_timeout=0.3)
    cloud.stuck_attach.add("i-h1")
    disk = cloud.add_disk()
    with pytest.raises(DeadlineExceeded, match=disk.id):
        publish(ctl, disk.id, "i-h1")
    assert cloud.disk(disk.id).status == port.ATTACHING  # ECS refuses to detach it now
    cloud.release_stuck_attach("i-h1")
    publish(ctl, disk.id, "i-h1")
    assert cloud.disk(disk.id).attachments == ("i-h1",)
    assert cloud.calls["attach_disk"] == 1


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
    calls = sum(cloud.calls.values())
    with pytest.raises(NotFound, match="not an ECS disk id"):
        ctl.ValidateVolumeCapabilities(
            csi_pb2.ValidateVolumeCapabilitiesRequest(
                volume_id="fake-vol-id", volume_capabilities=[mount_cap()]
            )
        )
    # Missing capabilities are INVALID_ARGUMENT even when the id names nothing.
    with pytest.raises(InvalidArgument, match="volume_capabilities"):
        ctl.ValidateVolumeCapabilities(
            csi_pb2.ValidateVolumeCapabilitiesRequest(volume_id="fake-vol-id")
        )
    assert sum(cloud.calls.values()) == calls


def test_list_volumes_pages_every_disk(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    """Static volumes too: external-attacher re-publishes whatever the listing lacks."""
    ours = [cloud.add_disk(tags={VOLUME_NAME_TAG: "v0"}, status=port.IN_USE, attachments=("i-h1",))]
    ours += [cloud.add_disk(tags={VOLUME_NAME_TAG: f"v{i}"}) for i in range(1, 5)]
    ours += [cloud.add_disk(tags={"other": "x"}, status=port.IN_USE, attachments=("i-h2",))]
    seen: dict[str, list[str]] = {}
    token = ""
    pages = 0
    for _ in range(100):  # a paging bug must not loop forever
        resp = ctl.ListVolumes(csi_pb2.ListVolumesRequest(max_entries=2, starting_token=token))
        assert len(resp.entries) <= 2
        for e in resp.entries:
            seen[e.volume.volume_id] = list(e.status.published_node_ids)
        pages += 1
        token = resp.next_token
        if not token:
            break
    else:
        pytest.fail("the listing never ended")
    assert set(seen) == {d.id for d in ours}
    assert seen[ours[0].id] == ["i-h1"]
    assert seen[ours[-1].id] == ["i-h2"]
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
    with pytest.raises(NotFound, match="not an ECS disk id"):
        ctl.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id="fake-vol-id"))


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


def validate(
    ctl: ControllerService,
    volume_id: str,
    caps: list[csi_pb2.VolumeCapability],
    params: dict[str, str] | None = None,
) -> csi_pb2.ValidateVolumeCapabilitiesResponse:
    return ctl.ValidateVolumeCapabilities(
        csi_pb2.ValidateVolumeCapabilitiesRequest(
            volume_id=volume_id, volume_capabilities=caps, parameters=params or {}
        )
    )


def flagged_cap(*flags: str, group: str = "") -> csi_pb2.VolumeCapability:
    cap = mount_cap()
    cap.mount.mount_flags.extend(flags)
    cap.mount.volume_mount_group = group
    return cap


@pytest.mark.parametrize(
    ("caps", "params", "match"),
    [
        ([flagged_cap("bind,remount")], None, "bind"),
        ([flagged_cap("x;y")], None, "x;y"),
        ([flagged_cap("noatime\nro")], None, "control"),
        ([flagged_cap(group="1000")], None, "volume_mount_group"),
        ([mount_cap(fs="btrfs")], None, "btrfs"),
        ([mount_cap()], {"foo": "bar"}, "foo"),
        ([mount_cap()], {"type": "cloud_unknown"}, "cloud_unknown"),
        ([mount_cap(), mount_cap(Mode.MULTI_NODE_READER_ONLY)], None, "block"),
    ],
)
def test_validate_does_not_confirm_what_the_node_refuses(
    ctl: ControllerService,
    cloud: InMemoryCloud,
    caps: list[csi_pb2.VolumeCapability],
    params: dict[str, str] | None,
    match: str,
) -> None:
    disk = cloud.add_disk()
    resp = validate(ctl, disk.id, caps, params)
    assert not resp.HasField("confirmed")
    assert match in resp.message


def test_validate_confirms_what_the_node_serves(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    disk = cloud.add_disk(multi_attach=True)
    caps = [
        flagged_cap("noatime", "nodiscard,nosuid"),
        mount_cap(Mode.SINGLE_NODE_MULTI_WRITER, fs="XFS"),
        block_cap(Mode.MULTI_NODE_MULTI_WRITER),
    ]
    params = {"type": "cloud_essd", "csi.storage.k8s.io/pvc/name": "data"}
    resp = validate(ctl, disk.id, caps, params)
    assert list(resp.confirmed.volume_capabilities) == caps
    assert dict(resp.confirmed.parameters) == params


@pytest.mark.parametrize("node_id", ["i-h1\n", "i-" + "x" * 127])
def test_publish_refuses_malformed_node_ids_before_ecs(
    ctl: ControllerService, cloud: InMemoryCloud, node_id: str
) -> None:
    disk = cloud.add_disk()
    calls = sum(cloud.calls.values())
    with pytest.raises(InvalidArgument, match="node_id"):
        ctl.ControllerPublishVolume(
            csi_pb2.ControllerPublishVolumeRequest(
                volume_id=disk.id, node_id=node_id, volume_capability=mount_cap()
            )
        )
    with pytest.raises(InvalidArgument, match="node_id"):
        ctl.ControllerUnpublishVolume(
            csi_pb2.ControllerUnpublishVolumeRequest(volume_id=disk.id, node_id=node_id)
        )
    assert sum(cloud.calls.values()) == calls


@pytest.mark.parametrize("node_id", ["i-x/../y", "node-1", "I-ABC", "i-", "fake-node-id-1"])
def test_node_ids_no_instance_can_have_are_answered_without_ecs(
    ctl: ControllerService, cloud: InMemoryCloud, node_id: str
) -> None:
    """Publishing to such a node is NOT_FOUND, unpublishing from it is done already."""
    disk = cloud.add_disk()
    calls = sum(cloud.calls.values())
    with pytest.raises(NotFound, match="node"):
        ctl.ControllerPublishVolume(
            csi_pb2.ControllerPublishVolumeRequest(
                volume_id=disk.id, node_id=node_id, volume_capability=mount_cap()
            )
        )
    ctl.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id=disk.id, node_id=node_id)
    )
    ctl.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id="fake-vol-id", node_id="i-h1")
    )
    assert sum(cloud.calls.values()) == calls


def test_publish_refuses_mount_flags_the_node_refuses(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    disk = cloud.add_disk()
    with pytest.raises(InvalidArgument, match="bind"):
        ctl.ControllerPublishVolume(
            csi_pb2.ControllerPublishVolumeRequest(
                volume_id=disk.id, node_id="i-h1", volume_capability=flagged_cap("bind")
            )
        )
    assert cloud.calls["attach_disk"] == 0
