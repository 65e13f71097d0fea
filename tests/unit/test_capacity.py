"""GetCapacity per topology segment and StorageClass, from one stock read reused for
--stock-refresh-interval; CreateVolume and the PV topology by the nodes' disk types; regional
disks created for the region."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from csi_disk import topology
from csi_disk.capacity import IN_STOCK_CAPACITY, Capacity
from csi_disk.categories import GIB
from csi_disk.controller import ControllerService
from csi_disk.csi_pb import csi_pb2
from csi_disk.errors import InvalidArgument, ResourceExhausted
from csi_disk.topology import K8S_REGION_KEY, ZONE_KEY
from tests.fakes import InMemoryCloud, ecs_error
from tests.unit.controller_helpers import controller, running_waiter

H, ZONE_I = "cn-hangzhou-h", "cn-hangzhou-i"
REGIONAL = "cloud_regional_disk_auto"
RPC = csi_pb2.ControllerServiceCapability.RPC
Mode = csi_pb2.VolumeCapability.AccessMode


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cloud() -> InMemoryCloud:
    c = InMemoryCloud()
    c.add_instance("i-h", H, instance_type="ecs.g7.large")
    c.add_instance("i-i", ZONE_I, instance_type="ecs.g8i.large")
    return c


@pytest.fixture
def ctl(cloud: InMemoryCloud) -> Iterator[ControllerService]:
    with running_waiter(cloud, 0.005, collect_window=0.001) as waiter:
        yield controller(cloud, waiter, operation_timeout=5.0)


def segment(zone: str = "", *types: str, region: str = "cn-hangzhou") -> csi_pb2.Topology:
    return csi_pb2.Topology(segments=topology.node_segments(zone, region, "i-x", types))


def ask(
    capacity: Capacity, params: dict[str, str], where: csi_pb2.Topology | None = None
) -> tuple[int, int]:
    request = csi_pb2.GetCapacityRequest(parameters=params)
    if where is not None:
        request.accessible_topology.CopyFrom(where)
    answer = capacity.get(request, "cn-hangzhou")
    return answer.available_capacity, answer.maximum_volume_size.value


def test_capacity_per_segment_follows_stock_and_what_the_node_attaches(
    cloud: InMemoryCloud,
) -> None:
    capacity = Capacity(cloud, refresh_interval=60)
    cloud.stock[(H, "cloud_essd")] = 0
    essd = {"type": "cloud_essd"}
    assert ask(capacity, essd, segment(H, "cloud_essd")) == (0, 0)
    assert ask(capacity, essd, segment(ZONE_I, "cloud_essd")) == (IN_STOCK_CAPACITY, 65536 * GIB)
    # The node of this segment cannot attach ESSD Entry; this one can.
    entry = {"type": "cloud_essd_entry"}
    assert ask(capacity, entry, segment(ZONE_I, "cloud_essd")) == (0, 0)
    assert ask(capacity, entry, segment(ZONE_I, "cloud_essd_entry")) == (
        IN_STOCK_CAPACITY,
        32768 * GIB,
    )
    # A fallback list: the largest of what is left; a node reporting no types restricts nothing.
    both = {"type": "cloud_essd,cloud_ssd"}
    assert ask(capacity, both, segment(H)) == (IN_STOCK_CAPACITY, 32768 * GIB)
    assert ask(capacity, {"type": "cloud_essd", "performanceLevel": "PL2"}, segment(ZONE_I)) == (
        IN_STOCK_CAPACITY,
        65536 * GIB,
    )


def test_regional_capacity_is_the_regions(cloud: InMemoryCloud) -> None:
    capacity = Capacity(cloud, refresh_interval=60)
    regional = {"type": REGIONAL}
    assert ask(capacity, regional, segment(H, REGIONAL)) == (IN_STOCK_CAPACITY, 65536 * GIB)
    assert ask(capacity, regional, segment(H, "cloud_essd")) == (0, 0)
    assert ask(capacity, regional, segment(H, REGIONAL, region="cn-beijing")) == (0, 0)
    cloud.stock[("cn-hangzhou", REGIONAL)] = 0
    capacity = Capacity(cloud, refresh_interval=60)
    assert ask(capacity, regional, segment(ZONE_I, REGIONAL)) == (0, 0)


def test_capacity_without_topology_and_with_zone_ids(cloud: InMemoryCloud) -> None:
    capacity = Capacity(cloud, refresh_interval=60)
    assert ask(capacity, {})[0] == IN_STOCK_CAPACITY  # csi-sanity's bare request
    cloud.unsupported.add((H, "cloud_ssd"))
    cloud.stock[(ZONE_I, "cloud_ssd")] = 0
    capacity = Capacity(cloud, refresh_interval=60)
    assert ask(capacity, {"type": "cloud_ssd"}) == (0, 0)
    assert ask(capacity, {"type": "cloud_essd", "zoneId": ZONE_I}, segment(H)) == (0, 0)
    assert ask(capacity, {"type": "cloud_essd", "zoneId": ZONE_I})[0] == IN_STOCK_CAPACITY


def test_the_provisioners_own_class_keys_are_not_parameters(cloud: InMemoryCloud) -> None:
    """csi-provisioner passes a class's parameters to GetCapacity unfiltered."""
    capacity = Capacity(cloud, refresh_interval=60)
    params = {
        "type": "cloud_ssd",
        "csi.storage.k8s.io/provisioner-secret-name": "ecs-keys",
        "csi.storage.k8s.io/provisioner-secret-namespace": "kube-system",
        "csi.storage.k8s.io/fstype": "xfs",
    }
    assert ask(capacity, params, segment(H)) == (IN_STOCK_CAPACITY, 32768 * GIB)


def test_bad_parameters_or_topology_are_invalid_arguments(cloud: InMemoryCloud) -> None:
    capacity = Capacity(cloud, refresh_interval=60)
    with pytest.raises(InvalidArgument, match="unknown parameter"):
        ask(capacity, {"colour": "blue"})
    with pytest.raises(InvalidArgument, match="zone"):
        ask(capacity, {}, csi_pb2.Topology(segments={ZONE_KEY: "not a zone"}))


def test_one_stock_read_serves_every_call_until_it_is_stale(cloud: InMemoryCloud) -> None:
    clock = Clock()
    capacity = Capacity(cloud, refresh_interval=30, clock=clock)
    for zone in (H, ZONE_I, H):
        ask(capacity, {"type": "cloud_essd"}, segment(zone))
    assert cloud.calls["available_disks"] == 2  # the zones and the region, once
    cloud.stock[(H, "cloud_essd")] = 0
    clock.now += 29
    assert ask(capacity, {"type": "cloud_essd"}, segment(H))[0] == IN_STOCK_CAPACITY
    clock.now += 2
    assert ask(capacity, {"type": "cloud_essd"}, segment(H)) == (0, 0)
    assert cloud.calls["available_disks"] == 4


def test_a_failed_read_keeps_the_last_one_and_waits_before_trying_again(
    cloud: InMemoryCloud,
) -> None:
    clock = Clock()
    capacity = Capacity(cloud, refresh_interval=30, clock=clock)
    cloud.fail("available_disks", ecs_error("Forbidden.RAM", "", "DescribeAvailableResource"))
    assert capacity.stock() is None  # nothing known: nothing ruled out
    assert ask(capacity, {"type": "cloud_essd"}, segment(H))[0] == IN_STOCK_CAPACITY
    assert cloud.calls["available_disks"] == 1
    clock.now += 11
    first = capacity.stock()
    assert first is not None
    clock.now += 31
    cloud.fail("available_disks", ecs_error("ServiceUnavailable", "", "DescribeAvailableResource"))
    assert capacity.stock() is first


def test_get_capacity_is_advertised_and_served(ctl: ControllerService) -> None:
    caps = ctl.ControllerGetCapabilities(csi_pb2.ControllerGetCapabilitiesRequest(), None)
    assert RPC.GET_CAPACITY in {c.rpc.type for c in caps.capabilities}
    answer = ctl.GetCapacity(
        csi_pb2.GetCapacityRequest(
            parameters={"type": "cloud_ssd"}, accessible_topology=segment(H)
        ),
        None,
    )
    assert answer.maximum_volume_size.value == 32768 * GIB


# --- CreateVolume by the nodes' disk types --------------------------------------------------


def create(
    ctl: ControllerService, params: dict[str, str], *terms: csi_pb2.Topology, name: str = "pvc-t"
) -> csi_pb2.Volume:
    request = csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=20 * GIB),
        volume_capabilities=[
            csi_pb2.VolumeCapability(
                mount=csi_pb2.VolumeCapability.MountVolume(),
                access_mode=csi_pb2.VolumeCapability.AccessMode(mode=Mode.SINGLE_NODE_WRITER),
            )
        ],
        parameters=params,
    )
    request.accessibility_requirements.requisite.extend(terms)
    request.accessibility_requirements.preferred.extend(terms)
    return ctl.CreateVolume(request, None).volume


def test_create_picks_the_first_category_the_selected_node_attaches(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    """The StorageClass prefers ESSD Entry; the node's family (g7) does not attach it."""
    g7 = segment(H, "cloud_essd", "cloud_ssd", "cloud_auto", "cloud_efficiency")
    volume = create(ctl, {"type": "cloud_essd_entry,cloud_auto"}, g7)
    assert cloud.disk(volume.volume_id).category == "cloud_auto"
    assert cloud.calls["create_disk"] == 1
    assert [dict(t.segments) for t in volume.accessible_topology] == [
        {ZONE_KEY: H, topology.disk_type_key("cloud_auto"): "available"}
    ]


def test_create_refuses_what_the_selected_node_cannot_attach_without_calling_ecs(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    with pytest.raises(ResourceExhausted, match="no node in cn-hangzhou-h attaches it"):
        create(ctl, {"type": "cloud_essd_entry"}, segment(H, "cloud_essd"))
    assert cloud.calls["create_disk"] == 0


def test_a_node_reporting_no_types_gets_a_pv_without_the_type_label(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    volume = create(ctl, {"type": "cloud_ssd"}, segment(H))
    assert [dict(t.segments) for t in volume.accessible_topology] == [{ZONE_KEY: H}]


def test_a_regional_disk_is_created_for_the_region(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    g8i = segment(ZONE_I, "cloud_essd", REGIONAL)
    volume = create(ctl, {"type": f"{REGIONAL},cloud_essd"}, g8i)
    disk = cloud.disk(volume.volume_id)
    assert (disk.category, disk.zone) == (REGIONAL, "")
    assert [dict(t.segments) for t in volume.accessible_topology] == [
        {K8S_REGION_KEY: "cn-hangzhou", topology.disk_type_key(REGIONAL): "available"}
    ]
    assert create(ctl, {"type": f"{REGIONAL},cloud_essd"}, g8i).volume_id == volume.volume_id
    listed = ctl.ControllerGetVolume(
        csi_pb2.ControllerGetVolumeRequest(volume_id=volume.volume_id), None
    )
    assert dict(listed.volume.accessible_topology[0].segments) == {K8S_REGION_KEY: "cn-hangzhou"}


def test_a_regional_disk_attaches_in_another_zone(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    volume = create(ctl, {"type": REGIONAL}, segment(ZONE_I, REGIONAL))
    publish = csi_pb2.ControllerPublishVolumeRequest(
        volume_id=volume.volume_id,
        node_id="i-i",
        volume_capability=csi_pb2.VolumeCapability(
            mount=csi_pb2.VolumeCapability.MountVolume(),
            access_mode=csi_pb2.VolumeCapability.AccessMode(mode=Mode.SINGLE_NODE_WRITER),
        ),
    )
    ctl.ControllerPublishVolume(publish, None)
    assert cloud.disk(volume.volume_id).attachments == ("i-i",)
    ctl.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume.volume_id, node_id="i-i"), None
    )
    cloud.add_instance("i-h8", H, instance_type="ecs.g8i.large")
    publish.node_id = "i-h8"
    ctl.ControllerPublishVolume(publish, None)
    assert cloud.disk(volume.volume_id).attachments == ("i-h8",)
