"""NodeService against the in-memory ECS and a fake host: validation, codes and decisions."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from csi_disk import parameters, topology
from csi_disk.attach import Attacher
from csi_disk.cloud import port
from csi_disk.cloud.quotas import in_background
from csi_disk.cloud.waiter import DiskWaiter
from csi_disk.config import Config
from csi_disk.csi_pb import csi_pb2
from csi_disk.errors import DriverError
from csi_disk.host.filesystems import Probe
from csi_disk.host.run import CommandFailed
from csi_disk.node import UNPUBLISHED_DEVICE_GRACE, NodeService, max_volumes
from csi_disk.tokens import VOLUME_NAME_TAG
from tests.fakes import HERE, FakeHost, InMemoryCloud, ecs_error
from tests.waiting import wait_until

ZONE = "cn-hangzhou-h"
Cap = csi_pb2.VolumeCapability
Mode = Cap.AccessMode
RPC = csi_pb2.NodeServiceCapability.RPC


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def kubelet(tmp_path: Path) -> Path:
    return tmp_path / "kubelet"


@pytest.fixture
def cloud() -> InMemoryCloud:
    c = InMemoryCloud()
    c.add_instance(HERE, ZONE, instance_type="ecs.g7.large")
    c.add_instance("i-there", ZONE)
    c.add_instance("i-far", "cn-hangzhou-i")
    return c


@pytest.fixture
def waiter(cloud: InMemoryCloud) -> Iterator[DiskWaiter]:
    w = DiskWaiter(cloud, interval=0.01)
    yield w
    w.close()


@pytest.fixture
def host(cloud: InMemoryCloud) -> FakeHost:
    return FakeHost(cloud)


@pytest.fixture
def node(cloud: InMemoryCloud, waiter: DiskWaiter, host: FakeHost, kubelet: Path) -> NodeService:
    config = Config(kubelet_dir=kubelet, operation_timeout=2.0)
    return NodeService(
        config,
        instance_id=HERE,
        zone=ZONE,
        region="cn-hangzhou",
        attacher=Attacher(cloud, waiter, config),
        host=host,
        device_timeout=0.1,
    )


def mount_cap(fs: str = "ext4", flags: Sequence[str] = (), mode: int = Mode.SINGLE_NODE_WRITER):
    return Cap(
        mount=Cap.MountVolume(fs_type=fs, mount_flags=list(flags)),
        access_mode=Mode(mode=mode),
    )


def block_cap(mode: int = Mode.SINGLE_NODE_WRITER) -> Any:
    return Cap(block=Cap.BlockVolume(), access_mode=Mode(mode=mode))


def stage_req(disk_id: str, staging: Path, cap: Any = None, **context: str) -> Any:
    return csi_pb2.NodeStageVolumeRequest(
        volume_id=disk_id,
        staging_target_path=str(staging),
        volume_capability=cap if cap is not None else mount_cap(),
        volume_context=context,
    )


def publish_req(
    disk_id: str, staging: Path, target: Path, cap: Any = None, readonly: bool = False
) -> Any:
    return csi_pb2.NodePublishVolumeRequest(
        volume_id=disk_id,
        staging_target_path=str(staging),
        target_path=str(target),
        volume_capability=cap if cap is not None else mount_cap(),
        readonly=readonly,
    )


def unstage_req(disk_id: str, staging: Path) -> Any:
    return csi_pb2.NodeUnstageVolumeRequest(volume_id=disk_id, staging_target_path=str(staging))


def code_of(call: Any, request: Any) -> str:
    with pytest.raises(DriverError) as info:
        call(request, None)
    return info.value.code


class FakeMetadata:
    def instance_id(self) -> str:
        return HERE

    def zone_id(self) -> str:
        return ZONE

    def region_id(self) -> str:
        return "cn-hangzhou"

    def instance_type(self) -> str:
        return "ecs.g7.large"


# --- info ----------------------------------------------------------------------------------


def test_node_info_reports_upstream_topology_and_free_disk_slots(
    cloud: InMemoryCloud, waiter: DiskWaiter, kubelet: Path
) -> None:
    cloud.disk_quantity["ecs.g7.large"] = 16
    cloud.add_disk(status=port.IN_USE, attachments=(HERE,))  # system disk: not ours
    cloud.add_disk(status=port.IN_USE, attachments=(HERE,), tags={"team": "x"})
    cloud.add_disk(status=port.IN_USE, attachments=(HERE,), tags={VOLUME_NAME_TAG: "pv-1"})
    cloud.add_disk(status=port.IN_USE, attachments=("i-there",))  # another node's
    service = NodeService.from_metadata(
        Config(kubelet_dir=kubelet), FakeMetadata(), cloud, waiter, region="cn-hangzhou"
    )
    calls = sum(cloud.calls.values())
    info = service.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), None)
    assert sum(cloud.calls.values()) == calls  # computed once, at start
    assert info.node_id == HERE
    assert info.max_volumes_per_node == 14
    # The categories ecs.g7.large attaches in this zone, as upstream's node labels.
    disk_type = "node.csi.alibabacloud.com/disktype."
    assert dict(info.accessible_topology.segments) == {
        topology.ZONE_KEY: ZONE,
        topology.K8S_ZONE_KEY: ZONE,
        topology.K8S_REGION_KEY: "cn-hangzhou",
        topology.INSTANCE_ID_KEY: HERE,
        **{f"{disk_type}{c}": "available"
           for c in ("cloud_auto", "cloud_efficiency", "cloud_essd", "cloud_ssd")},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("instance_type", "configured", "expected"),
    [
        # NVMe g8i: ESSD-class disks, and regional ESSDs from the region-wide answer.
        ("ecs.g8i.large", "", {"cloud_auto", "cloud_essd", "cloud_regional_disk_auto"}),
        ("ecs.u1-c1m2.large", "", {"cloud_auto", "cloud_efficiency", "cloud_essd",
                                   "cloud_essd_entry", "cloud_ssd"}),
        # Stated: no ECS call at all.
        ("ecs.g7.large", "cloud_essd, cloud_auto,cloud_essd", {"cloud_auto", "cloud_essd"}),
        ("ecs.g7.large", "none", set()),
    ],
)  # fmt: skip
def test_node_info_reports_the_categories_its_instance_type_attaches(
    cloud: InMemoryCloud,
    waiter: DiskWaiter,
    kubelet: Path,
    instance_type: str,
    configured: str,
    expected: set[str],
) -> None:
    metadata = FakeMetadata()
    metadata.instance_type = lambda: instance_type  # type: ignore[method-assign]
    config = Config(kubelet_dir=kubelet, max_volumes_per_node=3, disk_categories=configured)
    service = NodeService.from_metadata(config, metadata, cloud, waiter)
    segments = service.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), None).accessible_topology.segments
    assert topology.disk_types_of(segments) == (frozenset(expected) if expected else None)
    assert all(segments[topology.disk_type_key(c)] == "available" for c in expected)
    assert (cloud.calls["available_disks"] == 2) is (configured == "")


def test_a_node_that_may_not_ask_reports_no_disk_types_and_starts(
    cloud: InMemoryCloud, waiter: DiskWaiter, kubelet: Path
) -> None:
    cloud.fail("available_disks", ecs_error("Forbidden.RAM", "", "DescribeAvailableResource"))
    config = Config(kubelet_dir=kubelet, max_volumes_per_node=3)
    service = NodeService.from_metadata(config, FakeMetadata(), cloud, waiter)
    segments = service.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), None).accessible_topology.segments
    assert topology.disk_types_of(segments) is None
    assert segments[topology.ZONE_KEY] == ZONE


def test_a_node_start_is_retried_when_ecs_cannot_answer_which_types_it_attaches(
    cloud: InMemoryCloud, waiter: DiskWaiter, kubelet: Path
) -> None:
    cloud.fail("available_disks", ecs_error("ServiceUnavailable", "", "DescribeAvailableResource"))
    config = Config(kubelet_dir=kubelet, max_volumes_per_node=3)
    with pytest.raises(DriverError):
        NodeService.from_metadata(config, FakeMetadata(), cloud, waiter)


def test_node_info_overrides_from_config(
    cloud: InMemoryCloud, waiter: DiskWaiter, kubelet: Path
) -> None:
    config = Config(kubelet_dir=kubelet, node_id="i-named", max_volumes_per_node=7)
    service = NodeService.from_metadata(config, FakeMetadata(), cloud, waiter)
    info = service.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), None)
    assert (info.node_id, info.max_volumes_per_node) == ("i-named", 7)
    assert cloud.calls["instance_disk_quantity"] == 0
    assert cloud.calls["find_disks"] == 0


def test_node_info_is_looked_at_again_in_the_background(
    cloud: InMemoryCloud, waiter: DiskWaiter, kubelet: Path
) -> None:
    cloud.disk_quantity["ecs.g7.large"] = 16
    service = NodeService.from_metadata(Config(kubelet_dir=kubelet), FakeMetadata(), cloud, waiter)
    try:
        assert service.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), None).max_volumes_per_node == 16
        cloud.add_disk(status=port.IN_USE, attachments=(HERE,))  # attached by someone else
        looks: list[bool] = []

        def look() -> int:
            looks.append(in_background())  # after the calls CSI requests wait for
            return max_volumes(Config(), cloud, HERE, "ecs.g7.large")

        service.refresh_in_background(look, every=0.01)
        wait_until(
            lambda: service.NodeGetInfo(None, None).max_volumes_per_node == 15,
            "the limit counts the new disk",
        )
        assert looks and all(looks)
    finally:
        service.close()


def test_a_failed_look_keeps_the_last_node_info(
    cloud: InMemoryCloud, waiter: DiskWaiter, kubelet: Path
) -> None:
    config = Config(kubelet_dir=kubelet, node_id="i-named", max_volumes_per_node=7)
    service = NodeService.from_metadata(config, FakeMetadata(), cloud, waiter)
    tried = threading.Event()

    def look() -> int:
        tried.set()
        raise DriverError("ECS is away")

    try:
        service.refresh_in_background(look, every=0.01)
        assert tried.wait(5)
        assert service.NodeGetInfo(None, None).max_volumes_per_node == 7
    finally:
        service.close()


def test_capabilities_are_exactly_the_supported_ones(node: NodeService) -> None:
    reply = node.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest(), None)
    kinds = {c.rpc.type for c in reply.capabilities}
    assert kinds == {
        RPC.STAGE_UNSTAGE_VOLUME,
        RPC.GET_VOLUME_STATS,
        RPC.VOLUME_CONDITION,
        RPC.SINGLE_NODE_MULTI_WRITER,
        RPC.EXPAND_VOLUME,
    }


def test_expand_needs_a_volume_id(node: NodeService) -> None:
    # Growth itself runs on real devices: tests/integration/features.
    assert code_of(node.NodeExpandVolume, csi_pb2.NodeExpandVolumeRequest()) == "INVALID_ARGUMENT"


# --- validation ----------------------------------------------------------------------------

MALFORMED_IDS = ["", "d-abc\x00", "d-" + "a" * 200]
NAMELESS_IDS = ["../d-abc", "d-abc/def", "d-abc def", "vol-123", "fake-vol-id-1"]


@pytest.mark.parametrize("bad", MALFORMED_IDS)
def test_malformed_volume_ids_are_invalid_everywhere(
    node: NodeService, cloud: InMemoryCloud, kubelet: Path, bad: str
) -> None:
    staging = kubelet / "stage"
    target = kubelet / "pods" / "t"
    requests = [
        (node.NodeStageVolume, stage_req(bad, staging)),
        (node.NodeUnstageVolume, unstage_req(bad, staging)),
        (node.NodePublishVolume, publish_req(bad, staging, target)),
        (
            node.NodeUnpublishVolume,
            csi_pb2.NodeUnpublishVolumeRequest(volume_id=bad, target_path=str(target)),
        ),
        (
            node.NodeGetVolumeStats,
            csi_pb2.NodeGetVolumeStatsRequest(volume_id=bad, volume_path=str(target)),
        ),
    ]
    for call, request in requests:
        assert code_of(call, request) == "INVALID_ARGUMENT"
    assert sum(cloud.calls.values()) == 0


@pytest.mark.parametrize("nameless", NAMELESS_IDS)
def test_ids_no_disk_can_have_are_answered_locally(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path, nameless: str
) -> None:
    """Not found where a volume must exist, done already where it must be gone; neither
    ECS nor the host is asked, and no path is built from the id."""
    staging = kubelet / "stage"
    target = kubelet / "pods" / "t"
    for call, request in (
        (node.NodeStageVolume, stage_req(nameless, staging)),
        (node.NodePublishVolume, publish_req(nameless, staging, target)),
        (
            node.NodeGetVolumeStats,
            csi_pb2.NodeGetVolumeStatsRequest(volume_id=nameless, volume_path=str(target)),
        ),
        (
            node.NodeExpandVolume,
            csi_pb2.NodeExpandVolumeRequest(volume_id=nameless, volume_path="some/path"),
        ),
    ):
        assert code_of(call, request) == "NOT_FOUND"
    node.NodeUnstageVolume(unstage_req(nameless, staging), None)
    node.NodeUnpublishVolume(
        csi_pb2.NodeUnpublishVolumeRequest(volume_id=nameless, target_path=str(target)), None
    )
    assert sum(cloud.calls.values()) == 0
    assert host.mount_calls == [] and host.waits == [] and host.formatted == []
    assert not kubelet.exists()


@pytest.mark.parametrize(
    "path",
    ["", "relative/stage", "/etc/stage", "{k}/../escape", "{k}", "{k}-sibling/x", "{k}/a\nb"],
)
def test_paths_outside_the_kubelet_dir_are_refused(
    node: NodeService, cloud: InMemoryCloud, kubelet: Path, path: str
) -> None:
    text = path.format(k=kubelet)
    disk = cloud.add_disk()
    good = kubelet / "ok"
    assert code_of(node.NodeStageVolume, stage_req(disk.id, Path(text))) == "INVALID_ARGUMENT"
    assert code_of(node.NodeUnstageVolume, unstage_req(disk.id, Path(text))) == ("INVALID_ARGUMENT")
    request = publish_req(disk.id, good, good)
    request.target_path = text
    assert code_of(node.NodePublishVolume, request) == "INVALID_ARGUMENT"
    request = publish_req(disk.id, good, good)
    request.staging_target_path = text
    # An unset staging path is the spec's FAILED_PRECONDITION (STAGE_UNSTAGE_VOLUME is set).
    expected = "FAILED_PRECONDITION" if not text else "INVALID_ARGUMENT"
    assert code_of(node.NodePublishVolume, request) == expected
    stats = csi_pb2.NodeGetVolumeStatsRequest(volume_id=disk.id, volume_path=text)
    expand = csi_pb2.NodeExpandVolumeRequest(volume_id=disk.id, volume_path=text)
    # Stats and expansion ask about the volume at a path: a path the plugin never publishes
    # to holds none, the spec's NOT_FOUND; a missing or garbled path is still malformed.
    expected = "INVALID_ARGUMENT" if not text or "\n" in text else "NOT_FOUND"
    assert code_of(node.NodeGetVolumeStats, stats) == expected
    assert code_of(node.NodeExpandVolume, expand) == expected
    assert cloud.calls["attach_disk"] == 0
    assert not kubelet.exists()  # nothing was created anywhere


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    return path


def test_stage_through_a_link_leading_outside_is_refused_before_attaching(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path, outside: Path
) -> None:
    (kubelet / "plugins").mkdir(parents=True)
    (kubelet / "plugins" / "evil").symlink_to(outside)
    disk = cloud.add_disk()
    with pytest.raises(DriverError) as caught:
        node.NodeStageVolume(stage_req(disk.id, kubelet / "plugins" / "evil" / "gm"), None)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert "staging_target_path" in caught.value.message
    assert cloud.calls["attach_disk"] == 0
    assert host.mount_calls == [] and list(outside.iterdir()) == []


def test_link_swapped_in_while_staging_is_caught_before_mounting(
    node: NodeService,
    cloud: InMemoryCloud,
    host: FakeHost,
    kubelet: Path,
    outside: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parent is replaced by a link after the directories were made (during the
    device probe): the check right before mount(8) still refuses it."""
    parent = kubelet / "plugins" / "pv"
    probe = host.probe

    def swap_then_probe(device: Path) -> Probe:
        if not parent.is_symlink():
            parent.rename(outside / "moved")
            parent.symlink_to(outside / "moved")
        return probe(device)

    monkeypatch.setattr(host, "probe", swap_then_probe)
    disk = cloud.add_disk()
    request = stage_req(disk.id, parent / "globalmount")
    assert code_of(node.NodeStageVolume, request) == "INVALID_ARGUMENT"
    assert host.mount_calls == []


def test_publish_through_a_link_leading_outside_is_refused(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path, outside: Path
) -> None:
    disk = cloud.add_disk()
    staging = kubelet / "s"
    node.NodeStageVolume(stage_req(disk.id, staging), None)
    (kubelet / "pods").mkdir()
    (kubelet / "pods" / "evil").symlink_to(outside)
    mounts = list(host.mounts)
    with pytest.raises(DriverError) as caught:
        node.NodePublishVolume(publish_req(disk.id, staging, kubelet / "pods/evil/m"), None)
    assert (caught.value.code, "target_path" in caught.value.message) == ("INVALID_ARGUMENT", True)
    linked_staging = kubelet / "pods" / "s-link"
    linked_staging.symlink_to(outside)
    request = publish_req(disk.id, linked_staging, kubelet / "pods" / "ok" / "m")
    assert code_of(node.NodePublishVolume, request) == "INVALID_ARGUMENT"
    assert host.mounts == mounts and list(outside.iterdir()) == []


def test_block_publish_never_follows_a_dangling_link(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path, outside: Path
) -> None:
    disk = cloud.add_disk()
    staging, target = kubelet / "staging", kubelet / "dev" / "pv"
    node.NodeStageVolume(stage_req(disk.id, staging, block_cap()), None)
    target.parent.mkdir(parents=True)
    target.symlink_to(outside / "created")
    request = publish_req(disk.id, staging, target, block_cap())
    assert code_of(node.NodePublishVolume, request) == "INVALID_ARGUMENT"
    assert not (outside / "created").exists() and host.mounts == []


@pytest.mark.parametrize(
    ("cap", "context"),
    [
        (None, {}),  # capability missing
        (Cap(mount=Cap.MountVolume(fs_type="ext4")), {}),  # access mode missing
        (mount_cap(fs="btrfs"), {}),
        (mount_cap(fs="ext4; rm"), {}),
        (mount_cap(flags=["uid=0"]), {}),
        (mount_cap(flags=["noatime,exec;reboot"]), {}),
        (mount_cap(flags=["norecovery"]), {}),
        (mount_cap(mode=Mode.MULTI_NODE_MULTI_WRITER), {}),
        (mount_cap(), {"mkfsOptions": "-E foo;reboot"}),
        (mount_cap(), {"mkfsOptions": "--force"}),
        (mount_cap(fs="xfs"), {"mkfsOptions": "-O metadata_csum"}),
        (mount_cap(), {"mkfsOptions": "-d /dev/sda"}),
    ],
)
def test_bad_capabilities_and_options_are_invalid(
    node: NodeService, cloud: InMemoryCloud, kubelet: Path, cap: Any, context: dict[str, str]
) -> None:
    disk = cloud.add_disk()
    request = stage_req(disk.id, kubelet / "stage", cap, **context)
    if cap is None:
        request.ClearField("volume_capability")
    assert code_of(node.NodeStageVolume, request) == "INVALID_ARGUMENT"
    assert cloud.calls["attach_disk"] == 0
    assert not cloud.disk(disk.id).attachments


def test_unknown_disk_is_not_found_but_unstage_is_ok(node: NodeService, kubelet: Path) -> None:
    assert code_of(node.NodeStageVolume, stage_req("d-nosuchdisk", kubelet / "s")) == "NOT_FOUND"
    node.NodeUnstageVolume(unstage_req("d-nosuchdisk", kubelet / "s"), None)


def test_selinux_context_flag_is_accepted(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    disk = cloud.add_disk()
    flag = 'context="system_u:object_r:container_file_t:s0:c1,c2"'
    node.NodeStageVolume(stage_req(disk.id, kubelet / "s", mount_cap(flags=[flag])), None)
    assert flag in host.mount_calls[0][3]


# --- stage ---------------------------------------------------------------------------------


def test_stage_attaches_formats_once_and_is_idempotent(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    disk = cloud.add_disk()
    staging = kubelet / "plugins" / "pv" / "globalmount"
    request = stage_req(disk.id, staging, mount_cap("ext4", ["noatime"]), mkfsOptions="-i 8192")
    node.NodeStageVolume(request, None)
    node.NodeStageVolume(request, None)
    device = str(host.device_path(disk.id))
    assert cloud.disk(disk.id).attachments == (HERE,)
    assert host.formatted == [(device, "ext4", ("-i", "8192"))]
    assert host.fscked == []  # nothing to check on a fresh filesystem
    assert host.mount_calls == [(device, str(staging), "ext4", ("noatime",))]
    assert staging.is_dir()


def test_existing_filesystem_is_checked_mounted_and_grown_not_formatted(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    disk = cloud.add_disk()
    device = str(host.device_path(disk.id))
    host.contents[device] = Probe(type="ext4", usage="filesystem")
    node.NodeStageVolume(stage_req(disk.id, kubelet / "s"), None)
    assert host.formatted == []
    assert host.fscked == [device]
    assert host.grown == [device]


@pytest.mark.parametrize(("given", "checked"), [({}, True), ({"omitfsck": "true"}, False)])
def test_omitfsck_from_the_storage_class_skips_the_check(
    node: NodeService,
    cloud: InMemoryCloud,
    host: FakeHost,
    kubelet: Path,
    given: dict[str, str],
    checked: bool,
) -> None:
    """The controller carries the parameter in the volume context; the node obeys it."""
    context = parameters.parse(given).volume_context("cloud_essd", "")
    disk = cloud.add_disk()
    device = str(host.device_path(disk.id))
    host.contents[device] = Probe(type="ext4", usage="filesystem")
    node.NodeStageVolume(stage_req(disk.id, kubelet / "s", **context), None)
    assert host.fscked == ([device] if checked else [])
    assert [call[1] for call in host.mount_calls] == [str(kubelet / "s")]


@pytest.mark.parametrize(
    "cap",
    [mount_cap(mode=Mode.SINGLE_NODE_READER_ONLY), mount_cap(flags=["ro", "noatime"])],
)
def test_read_only_capability_is_mounted_without_repairing(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path, cap: Any
) -> None:
    disk = cloud.add_disk()
    device = str(host.device_path(disk.id))
    host.contents[device] = Probe(type="ext4", usage="filesystem")
    node.NodeStageVolume(stage_req(disk.id, kubelet / "s", cap), None)
    assert host.fscked == []
    assert len(host.mount_calls) == 1


def test_ext_smaller_than_its_disk_grows_before_mounting(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    """A restored or offline-resized disk: grown unmounted, needing no CAP_SYS_RESOURCE."""
    disk = cloud.add_disk()
    device = str(host.device_path(disk.id))
    host.contents[device] = Probe(type="ext4", usage="filesystem")
    host.ext_sizes[device] = 10 << 30
    node.NodeStageVolume(stage_req(disk.id, kubelet / "s"), None)
    assert host.formatted == []
    assert host.grown_offline[0] is True
    assert host.mount_calls, "mounted after growing"


def test_a_found_device_that_is_not_a_block_device_is_refused(
    node: NodeService,
    cloud: InMemoryCloud,
    host: FakeHost,
    kubelet: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever a lookup returned, nothing is formatted or mounted unless it is a block device."""
    disk = cloud.add_disk()
    monkeypatch.setattr(host, "device_number", lambda path: None)
    with pytest.raises(DriverError, match="not a block device") as info:
        node.NodeStageVolume(stage_req(disk.id, kubelet / "s"), None)
    assert info.value.code == "FAILED_PRECONDITION"
    assert host.formatted == [] and host.mount_calls == []


@pytest.mark.parametrize("fs", ["ext4", "xfs"])
def test_stage_survives_a_filesystem_that_fails_to_grow(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path, fs: str
) -> None:
    """The filesystem is usable at its old size; a later stage or expansion grows it."""
    disk = cloud.add_disk()
    device = str(host.device_path(disk.id))
    host.contents[device] = Probe(type=fs, usage="filesystem")
    host.ext_sizes[device] = 10 << 30
    host.grow_error = CommandFailed("resize2fs", 1, "no space for the new group descriptors")
    node.NodeStageVolume(stage_req(disk.id, kubelet / "s", mount_cap(fs)), None)
    assert host.grown == [] and host.formatted == []
    assert host.find_mount(kubelet / "s") is not None
    node.NodeStageVolume(stage_req(disk.id, kubelet / "s", mount_cap(fs)), None)  # retry: OK


def test_expand_grows_the_staged_filesystem_or_reports_why_not(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    disk = cloud.add_disk()
    staging = kubelet / "s"
    node.NodeStageVolume(stage_req(disk.id, staging), None)
    device = str(host.device_path(disk.id))
    request = csi_pb2.NodeExpandVolumeRequest(
        volume_id=disk.id,
        volume_path=str(staging),
        capacity_range=csi_pb2.CapacityRange(required_bytes=20 << 30),
    )
    host.grow_error = CommandFailed("resize2fs", 1, "Permission denied")
    assert code_of(node.NodeExpandVolume, request) == "INTERNAL"
    assert host.grown == []
    host.grow_error = None
    assert node.NodeExpandVolume(request, None).capacity_bytes == 20 << 30
    assert host.grown == [device] and host.rescanned == [device, device]
    bigger = csi_pb2.NodeExpandVolumeRequest()
    bigger.CopyFrom(request)
    bigger.capacity_range.required_bytes = 30 << 30  # the cloud resize has not arrived
    assert code_of(node.NodeExpandVolume, bigger) == "ABORTED"
    assert host.grown == [device]


def test_xfs_is_mounted_with_nouuid(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    disk = cloud.add_disk()
    node.NodeStageVolume(stage_req(disk.id, kubelet / "s", mount_cap("xfs")), None)
    assert host.mount_calls[0][2:] == ("xfs", ("nouuid",))


@pytest.mark.parametrize(
    "found",
    [
        Probe(type="xfs", usage="filesystem"),
        Probe(pttype="gpt"),
        Probe(type="LVM2_member", usage="raid"),
        Probe(type="crypto_LUKS", usage="crypto"),
        Probe(ambivalent=True),
    ],
)
def test_anything_on_the_device_but_the_wanted_filesystem_is_refused_untouched(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path, found: Probe
) -> None:
    disk = cloud.add_disk()
    host.contents[str(host.device_path(disk.id))] = found
    request = stage_req(disk.id, kubelet / "s", mount_cap("ext4"))
    assert code_of(node.NodeStageVolume, request) == "FAILED_PRECONDITION"
    assert host.formatted == []
    assert host.mounts == []


def test_restage_with_another_filesystem_or_device_already_exists(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    first, second = cloud.add_disk(), cloud.add_disk()
    staging = kubelet / "s"
    node.NodeStageVolume(stage_req(first.id, staging), None)
    assert code_of(node.NodeStageVolume, stage_req(first.id, staging, mount_cap("xfs"))) == (
        "ALREADY_EXISTS"
    )
    assert code_of(node.NodeStageVolume, stage_req(second.id, staging)) == "ALREADY_EXISTS"
    assert len(host.formatted) == 1  # checked before touching the second disk
    assert [m.mount_point for m in host.mounts] == [str(staging)]


def test_block_stage_attaches_and_touches_nothing(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    disk = cloud.add_disk()
    staging = kubelet / "block-staging"
    node.NodeStageVolume(stage_req(disk.id, staging, block_cap()), None)
    assert cloud.disk(disk.id).attached_to(HERE)
    assert host.formatted == [] and host.mounts == []
    assert not staging.exists()


def test_multi_node_block_volume_shares_a_multi_attach_disk(
    node: NodeService, cloud: InMemoryCloud, kubelet: Path
) -> None:
    disk = cloud.add_disk(multi_attach=True, status=port.IN_USE, attachments=("i-there",))
    cap = block_cap(Mode.MULTI_NODE_MULTI_WRITER)
    node.NodeStageVolume(stage_req(disk.id, kubelet / "s", cap), None)
    assert set(cloud.disk(disk.id).attachments) == {"i-there", HERE}


def test_wrong_zone_and_live_holder_are_failed_precondition(
    node: NodeService, cloud: InMemoryCloud, kubelet: Path
) -> None:
    far = cloud.add_disk(zone="cn-hangzhou-i")
    held = cloud.add_disk(status=port.IN_USE, attachments=("i-there",))
    assert code_of(node.NodeStageVolume, stage_req(far.id, kubelet / "a")) == (
        "FAILED_PRECONDITION"
    )
    assert code_of(node.NodeStageVolume, stage_req(held.id, kubelet / "b")) == (
        "FAILED_PRECONDITION"
    )
    assert cloud.disk(held.id).attachments == ("i-there",)


def test_concurrent_stage_of_one_volume_is_aborted(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    disk = cloud.add_disk()
    host.format_gate = threading.Event()
    request = stage_req(disk.id, kubelet / "s")
    first = threading.Thread(target=node.NodeStageVolume, args=(request, None))
    first.start()
    try:
        assert host.format_started.wait(5)
        assert code_of(node.NodeStageVolume, request) == "ABORTED"
        assert code_of(node.NodeUnstageVolume, unstage_req(disk.id, kubelet / "s")) == "ABORTED"
    finally:
        host.format_gate.set()
        first.join()
    assert len(host.formatted) == 1


def test_controller_mode_needs_the_disk_already_attached(
    cloud: InMemoryCloud, kubelet: Path
) -> None:
    host = FakeHost(None)
    config = Config(kubelet_dir=kubelet, attach_mode="controller")
    node = NodeService(config, instance_id=HERE, zone=ZONE, host=host, device_timeout=0.1)
    request = stage_req("d-notattached", kubelet / "s")
    assert code_of(node.NodeStageVolume, request) == "FAILED_PRECONDITION"
    request.publish_context["serial"] = "notattached"
    assert code_of(node.NodeStageVolume, request) == "FAILED_PRECONDITION"
    device = host.plug("d-attached1")
    request = stage_req("d-attached1", kubelet / "s")
    request.publish_context["serial"] = "someotherserial"
    assert code_of(node.NodeStageVolume, request) == "FAILED_PRECONDITION"
    request.publish_context["serial"] = "attached1"
    node.NodeStageVolume(request, None)
    assert host.mount_calls[0][0] == str(device)
    node.NodeUnstageVolume(unstage_req("d-attached1", kubelet / "s"), None)
    assert host.mounts == [] and not (kubelet / "s").exists()


def test_controller_mode_waits_long_only_for_a_disk_the_controller_attached(
    kubelet: Path,
) -> None:
    """With a serial, ControllerPublish attached the disk and its device may still be on
    the way; without one nothing will attach it, so a short udev grace is enough."""
    host = FakeHost(None)
    config = Config(kubelet_dir=kubelet, attach_mode="controller")
    node = NodeService(config, instance_id=HERE, zone=ZONE, host=host, device_timeout=60.0)
    request = stage_req("d-notattached", kubelet / "s")
    assert code_of(node.NodeStageVolume, request) == "FAILED_PRECONDITION"
    request.publish_context["serial"] = "notattached"
    assert code_of(node.NodeStageVolume, request) == "FAILED_PRECONDITION"
    assert host.waits == [UNPUBLISHED_DEVICE_GRACE, 60.0]
    assert UNPUBLISHED_DEVICE_GRACE < 60.0


# --- unstage -------------------------------------------------------------------------------


def test_unstage_unmounts_removes_and_detaches_repeatably(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    disk = cloud.add_disk()
    staging = kubelet / "s"
    node.NodeStageVolume(stage_req(disk.id, staging), None)
    node.NodeUnstageVolume(unstage_req(disk.id, staging), None)
    node.NodeUnstageVolume(unstage_req(disk.id, staging), None)
    assert host.mounts == []
    assert not staging.exists()
    assert cloud.disk(disk.id).attachments == ()
    assert cloud.calls["detach_disk"] == 2  # the second refused: not attached any more


def test_unstage_of_attached_but_unmounted_disk_just_detaches(
    node: NodeService, cloud: InMemoryCloud, kubelet: Path
) -> None:
    disk = cloud.add_disk(status=port.IN_USE, attachments=(HERE,))
    node.NodeUnstageVolume(unstage_req(disk.id, kubelet / "never-made"), None)
    assert cloud.disk(disk.id).status == port.AVAILABLE


def test_unstage_refuses_to_detach_a_disk_mounted_elsewhere(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    disk = cloud.add_disk()
    node.NodeStageVolume(stage_req(disk.id, kubelet / "s"), None)
    host.mount(host.device_path(disk.id), kubelet / "rogue", "ext4", [])
    assert code_of(node.NodeUnstageVolume, unstage_req(disk.id, kubelet / "s")) == (
        "FAILED_PRECONDITION"
    )
    assert cloud.disk(disk.id).attached_to(HERE)


def test_unstage_refuses_to_detach_a_block_device_still_published(
    node: NodeService, cloud: InMemoryCloud, kubelet: Path
) -> None:
    disk = cloud.add_disk()
    staging, target = kubelet / "s", kubelet / "dev" / "pod"
    node.NodeStageVolume(stage_req(disk.id, staging, block_cap()), None)
    node.NodePublishVolume(publish_req(disk.id, staging, target, block_cap()), None)
    assert code_of(node.NodeUnstageVolume, unstage_req(disk.id, staging)) == ("FAILED_PRECONDITION")
    assert cloud.disk(disk.id).attached_to(HERE)


def test_unstage_of_a_deleted_disk_is_ok(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    disk = cloud.add_disk()
    staging = kubelet / "s"
    node.NodeStageVolume(stage_req(disk.id, staging, block_cap()), None)
    del cloud.disks[disk.id]
    node.NodeUnstageVolume(unstage_req(disk.id, staging), None)
    assert not staging.exists()
    assert host.find_mount(staging) is None
    # DetachDisk answers that the disk is gone; nothing else is asked or touched.
    assert cloud.calls["detach_disk"] == 1 and cloud.asked("describe_disks") == 0
    node.NodeUnstageVolume(unstage_req(disk.id, staging), None)  # and again: still OK


# --- publish -------------------------------------------------------------------------------


def test_publish_binds_staging_and_is_idempotent(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    disk = cloud.add_disk()
    staging, target = kubelet / "s", kubelet / "pods" / "p1" / "mount"
    node.NodeStageVolume(stage_req(disk.id, staging, mount_cap(flags=["noatime"])), None)
    request = publish_req(disk.id, staging, target, mount_cap(flags=["noatime"]))
    node.NodePublishVolume(request, None)
    node.NodePublishVolume(request, None)
    published = [m for m in host.mounts if m.mount_point == str(target)]
    assert len(published) == 1 and not published[0].read_only
    assert target.is_dir()
    ro = publish_req(disk.id, staging, target, readonly=True)
    assert code_of(node.NodePublishVolume, ro) == "ALREADY_EXISTS"


@pytest.mark.parametrize("block", [False, True])
def test_single_writer_is_published_once(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path, block: bool
) -> None:
    """SINGLE_NODE_SINGLE_WRITER: a second target is FAILED_PRECONDITION, the same target a
    repeat; SINGLE_NODE_MULTI_WRITER shares the volume between targets."""
    disk = cloud.add_disk()
    staging = kubelet / "s"
    single = (block_cap if block else mount_cap)(mode=Mode.SINGLE_NODE_SINGLE_WRITER)
    multi = (block_cap if block else mount_cap)(mode=Mode.SINGLE_NODE_MULTI_WRITER)
    node.NodeStageVolume(stage_req(disk.id, staging, single), None)
    first = publish_req(disk.id, staging, kubelet / "pods" / "a" / "target", single)
    node.NodePublishVolume(first, None)
    node.NodePublishVolume(first, None)
    mounts = list(host.mounts)
    other = publish_req(disk.id, staging, kubelet / "pods" / "a" / "other_target", single)
    assert code_of(node.NodePublishVolume, other) == "FAILED_PRECONDITION"
    assert host.mounts == mounts
    node.NodePublishVolume(publish_req(disk.id, staging, kubelet / "pods" / "b", multi), None)
    assert len(host.mounts) == len(mounts) + 1


def test_read_only_publish_and_reader_only_mode(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    disk = cloud.add_disk()
    staging = kubelet / "s"
    node.NodeStageVolume(stage_req(disk.id, staging), None)
    node.NodePublishVolume(publish_req(disk.id, staging, kubelet / "t1", readonly=True), None)
    reader = mount_cap(mode=Mode.SINGLE_NODE_READER_ONLY)
    node.NodePublishVolume(publish_req(disk.id, staging, kubelet / "t2", reader), None)
    assert host.find_mount(kubelet / "t1").read_only  # type: ignore[union-attr]
    assert host.find_mount(kubelet / "t2").read_only  # type: ignore[union-attr]


def test_publish_onto_another_mount_already_exists(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    one, two = cloud.add_disk(), cloud.add_disk()
    node.NodeStageVolume(stage_req(one.id, kubelet / "s1"), None)
    node.NodeStageVolume(stage_req(two.id, kubelet / "s2"), None)
    node.NodePublishVolume(publish_req(one.id, kubelet / "s1", kubelet / "t"), None)
    request = publish_req(two.id, kubelet / "s2", kubelet / "t")
    assert code_of(node.NodePublishVolume, request) == "ALREADY_EXISTS"


def test_publish_before_stage_is_failed_precondition(
    node: NodeService, cloud: InMemoryCloud, kubelet: Path
) -> None:
    disk = cloud.add_disk()
    request = publish_req(disk.id, kubelet / "s", kubelet / "t")
    assert code_of(node.NodePublishVolume, request) == "FAILED_PRECONDITION"
    assert not (kubelet / "t").exists()


def test_block_publish_binds_the_device_onto_a_file_and_unpublish_removes_it(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    disk = cloud.add_disk()
    staging, target = kubelet / "staging", kubelet / "dev" / "pv"
    node.NodeStageVolume(stage_req(disk.id, staging, block_cap()), None)
    request = publish_req(disk.id, staging, target, block_cap())
    node.NodePublishVolume(request, None)
    node.NodePublishVolume(request, None)
    assert target.is_file()
    assert host.device_number(target) == host.rdevs[disk.id]
    assert len([m for m in host.mounts if m.mount_point == str(target)]) == 1
    unpublish = csi_pb2.NodeUnpublishVolumeRequest(volume_id=disk.id, target_path=str(target))
    node.NodeUnpublishVolume(unpublish, None)
    node.NodeUnpublishVolume(unpublish, None)
    assert not target.exists() and host.mounts == []


# --- stats ---------------------------------------------------------------------------------


def test_stats_for_mount_block_missing_and_unmounted_paths(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    disk = cloud.add_disk()
    staging, target = kubelet / "s", kubelet / "t"
    node.NodeStageVolume(stage_req(disk.id, staging), None)
    node.NodePublishVolume(publish_req(disk.id, staging, target), None)
    calls = sum(cloud.calls.values())

    def stats(path: Path) -> Any:
        request = csi_pb2.NodeGetVolumeStatsRequest(volume_id=disk.id, volume_path=str(path))
        return node.NodeGetVolumeStats(request, None)

    reply = stats(target)
    Usage = csi_pb2.VolumeUsage
    by_unit = {u.unit: u for u in reply.usage}
    assert by_unit[Usage.BYTES].total == 20 << 30 and by_unit[Usage.BYTES].used == 5 << 30
    assert by_unit[Usage.INODES].available == 900
    assert not reply.volume_condition.abnormal
    host.unmount(target)
    gone = stats(target)
    assert gone.volume_condition.abnormal and "not mounted" in gone.volume_condition.message
    missing = csi_pb2.NodeGetVolumeStatsRequest(volume_id=disk.id, volume_path=str(kubelet / "x"))
    assert code_of(node.NodeGetVolumeStats, missing) == "NOT_FOUND"
    assert sum(cloud.calls.values()) == calls


def test_a_hung_filesystem_holds_stats_to_its_deadline_and_one_parked_thread(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    """Finding what is mounted at the path can block on a hung filesystem as surely as
    statvfs: the whole look is bounded, and repeated calls share the one parked probe."""
    disk = cloud.add_disk()
    staging, target = kubelet / "s", kubelet / "t"
    node.NodeStageVolume(stage_req(disk.id, staging), None)
    node.NodePublishVolume(publish_req(disk.id, staging, target), None)
    released = threading.Event()
    looks: list[Path] = []
    real_find_mount = host.find_mount

    def hung_find_mount(path: Path) -> Any:
        looks.append(path)
        released.wait(30)
        return real_find_mount(path)

    host.find_mount = hung_find_mount  # type: ignore[method-assign]
    node._stats_timeout = 0.2
    request = csi_pb2.NodeGetVolumeStatsRequest(volume_id=disk.id, volume_path=str(target))
    for _ in range(3):
        assert code_of(node.NodeGetVolumeStats, request) == "DEADLINE_EXCEEDED"
    assert len(looks) == 1, "each call parked another thread on the hung filesystem"
    released.set()
    host.find_mount = real_find_mount  # type: ignore[method-assign]
    for _ in range(100):  # the parked probe returns; the next call starts afresh
        try:
            reply = node.NodeGetVolumeStats(request, None)
            break
        except DriverError:
            threading.Event().wait(0.02)
    assert not reply.volume_condition.abnormal


def test_a_path_component_no_file_can_have_is_refused_or_already_done(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    """The kernel refuses a name over 255 bytes (ENAMETOOLONG): staging or publishing
    there is INVALID_ARGUMENT, undoing there is done, a volume there is NOT_FOUND."""
    disk = cloud.add_disk()
    kubelet.mkdir(parents=True)
    good = kubelet / "ok"
    for long in (kubelet / "pods" / ("a" * 300), kubelet.joinpath(*["b" * 40] * 120)):
        assert code_of(node.NodeStageVolume, stage_req(disk.id, long)) == "INVALID_ARGUMENT"
        request = publish_req(disk.id, good, long)
        assert code_of(node.NodePublishVolume, request) == "INVALID_ARGUMENT"
        node.NodeUnpublishVolume(
            csi_pb2.NodeUnpublishVolumeRequest(volume_id=disk.id, target_path=str(long)), None
        )
        node.NodeUnstageVolume(unstage_req(disk.id, long), None)
        stats = csi_pb2.NodeGetVolumeStatsRequest(volume_id=disk.id, volume_path=str(long))
        assert code_of(node.NodeGetVolumeStats, stats) == "NOT_FOUND"
        expand = csi_pb2.NodeExpandVolumeRequest(volume_id=disk.id, volume_path=str(long))
        assert code_of(node.NodeExpandVolume, expand) == "NOT_FOUND"
    assert cloud.calls["attach_disk"] == 0 and cloud.calls["detach_disk"] == 0
    assert list(kubelet.iterdir()) == []


def test_a_block_stage_where_a_filesystem_is_staged_already_exists(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    disk = cloud.add_disk()
    staging = kubelet / "s"
    node.NodeStageVolume(stage_req(disk.id, staging, mount_cap("ext4")), None)
    assert code_of(node.NodeStageVolume, stage_req(disk.id, staging, block_cap())) == (
        "ALREADY_EXISTS"
    )
    node.NodeStageVolume(stage_req(disk.id, staging, mount_cap("ext4")), None)  # still fine
    assert len(host.formatted) == 1


def test_a_disk_published_as_a_block_volume_is_never_staged_as_a_filesystem(
    node: NodeService, cloud: InMemoryCloud, host: FakeHost, kubelet: Path
) -> None:
    """Raw block data need not carry a signature blkid knows: probing would call the disk
    blank and format it."""
    disk = cloud.add_disk()
    staging, target = kubelet / "block-staging", kubelet / "dev" / "pv"
    node.NodeStageVolume(stage_req(disk.id, staging, block_cap()), None)
    node.NodePublishVolume(publish_req(disk.id, staging, target, block_cap()), None)
    other = kubelet / "fs-staging"
    assert code_of(node.NodeStageVolume, stage_req(disk.id, other)) == "ALREADY_EXISTS"
    assert host.formatted == [] and host.mount_calls == []


@pytest.mark.parametrize("key", ["serial", "serialNumber"])
def test_controller_mode_reads_the_serial_under_either_key(
    kubelet: Path, key: str
) -> None:
    """serialNumber is what the upstream Go driver's controller writes: during a rolling
    migration its publications must get the same serial check and the same long wait."""
    host = FakeHost(None)
    config = Config(kubelet_dir=kubelet, attach_mode="controller")
    node = NodeService(config, instance_id=HERE, zone=ZONE, host=host, device_timeout=60.0)
    host.plug("d-attached1")
    request = stage_req("d-attached1", kubelet / "s")
    request.publish_context[key] = "someotherserial"
    assert code_of(node.NodeStageVolume, request) == "FAILED_PRECONDITION"
    request = stage_req("d-notattached", kubelet / "s")
    request.publish_context[key] = "notattached"
    assert code_of(node.NodeStageVolume, request) == "FAILED_PRECONDITION"
    assert host.waits == [60.0]  # the controller attached it: the device gets its full time
    request = stage_req("d-attached1", kubelet / "s")
    request.publish_context[key] = "attached1"
    node.NodeStageVolume(request, None)


def test_serials_that_disagree_are_refused(kubelet: Path) -> None:
    host = FakeHost(None)
    config = Config(kubelet_dir=kubelet, attach_mode="controller")
    node = NodeService(config, instance_id=HERE, zone=ZONE, host=host, device_timeout=0.1)
    host.plug("d-attached1")
    request = stage_req("d-attached1", kubelet / "s")
    request.publish_context.update(serial="attached1", serialNumber="attached2")
    assert code_of(node.NodeStageVolume, request) == "INVALID_ARGUMENT"
    assert host.mount_calls == []


def test_undoing_at_a_path_below_a_file_is_done(
    node: NodeService, cloud: InMemoryCloud, kubelet: Path
) -> None:
    """A parent that is a regular file (ENOTDIR) means nothing can be at the path."""
    disk = cloud.add_disk()
    kubelet.mkdir(parents=True)
    (kubelet / "a-file").write_text("not a directory\n")
    below = kubelet / "a-file" / "x"
    node.NodeUnstageVolume(unstage_req(disk.id, below), None)
    node.NodeUnpublishVolume(
        csi_pb2.NodeUnpublishVolumeRequest(volume_id=disk.id, target_path=str(below)), None
    )
    assert (kubelet / "a-file").read_text() == "not a directory\n"
