"""CSI conformance checks in the manner of csi-test's ``csi-sanity``, against the real daemon.

What each check asserts follows csi-sanity (missing fields, idempotency, capacity, paging,
Node* calls on volumes that do not exist) and, where the two differ, the CSI spec. Every
call goes through a ``csi-disk serve`` socket: one emulator, a controller and a node plugin
in controller attach mode, and another pair in node attach mode, shared by the module.

Ids: csi-sanity's default id generator makes ids such as ``fake-vol-id-<uuid>``. This
driver answers INVALID_ARGUMENT for an id that could never name an ECS resource (see
``csi_disk.volume_ids``), so the checks use well-formed ids that name nothing, which is
what csi-sanity's configurable generator is for; ``test_malformed_ids_*`` pin down the
deliberate answer for the others.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from csi_disk import DRIVER_NAME
from csi_disk.cluster import Plugin
from csi_disk.csi_pb import csi_pb2
from csi_disk.stack import EmulatorInfo, Stack, sweep
from csi_disk.topology import K8S_ZONE_KEY, ZONE_KEY

pytestmark = [pytest.mark.root, pytest.mark.timeout(240)]

GIB = 1024**3
CALL_TIMEOUT = 120.0
Code = grpc.StatusCode
AccessMode = csi_pb2.VolumeCapability.AccessMode
CtrlRPC = csi_pb2.ControllerServiceCapability.RPC
NodeRPC = csi_pb2.NodeServiceCapability.RPC
Service = csi_pb2.PluginCapability.Service

# Well-formed ids that name nothing in the emulator.
MISSING_VOLUME = "d-" + "0" * 20
MISSING_SNAPSHOT = "s-" + "0" * 20
MISSING_NODE = "i-" + "0" * 20


def mount_cap(mode: int = AccessMode.SINGLE_NODE_WRITER, fs_type: str = "") -> Any:
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type=fs_type),
        access_mode=AccessMode(mode=mode),
    )


def unique(prefix: str) -> str:
    return f"sanity-{prefix}-{uuid.uuid4().hex[:8]}"


def code_of(call: Callable[..., Any], request: Any) -> grpc.StatusCode:
    """The status code ``call`` fails with; the test fails if it succeeds."""
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=CALL_TIMEOUT)
    return err.value.code()


def is_mounted(path: Path) -> bool:
    result = subprocess.run(
        ["findmnt", "--noheadings", "--mountpoint", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return bool(result.stdout.strip())


@dataclass
class Side:
    """One attach mode: its controller, one node plugin, that node's instance and dir."""

    controller: Plugin
    node: Plugin
    node_id: str
    kubelet: Path


@dataclass
class Sanity:
    stack: Stack
    info: EmulatorInfo
    attach: Side  # --attach-mode controller
    local: Side  # --attach-mode node


@pytest.fixture(scope="module")
def sanity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sanity]:
    from tests.conftest import IN_CI, root_unavailable_reason

    reason = root_unavailable_reason()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"sanity tests cannot run in CI: {reason}")
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("sanity")
    with Stack(state, latency_scale=0.01) as stack:
        info = stack.start_emulator(zones=1, instances_per_zone=2)
        first, second = info.instances[0], info.instances[1]
        attach = Side(
            stack.start_controller("controller", name="controller-attach"),
            stack.start_node(first, "controller"),
            first.id,
            stack.kubelet_dir(first.id),
        )
        local = Side(
            stack.start_controller("node", name="controller-local"),
            stack.start_node(second, "node"),
            second.id,
            stack.kubelet_dir(second.id),
        )
        stack.wait_ready()
        yield Sanity(stack, info, attach, local)
    mounts, loops = sweep(state)
    assert not mounts and not loops, f"leaked mounts {mounts} and loop devices {loops}"


@dataclass
class Resources:
    """What a test made, undone afterwards even when it fails (csi-sanity's cleanup)."""

    sanity: Sanity
    volumes: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    published: list[tuple[Plugin, str, Path]] = field(default_factory=list)
    staged: list[tuple[Plugin, str, Path]] = field(default_factory=list)

    @property
    def controller(self) -> Any:
        return self.sanity.attach.controller.controller

    def create_volume(self, name: str, **fields: Any) -> csi_pb2.Volume:
        fields.setdefault("volume_capabilities", [mount_cap()])
        request = csi_pb2.CreateVolumeRequest(name=name, **fields)
        volume = self.controller.CreateVolume(request, timeout=CALL_TIMEOUT).volume
        if volume.volume_id not in self.volumes:
            self.volumes.append(volume.volume_id)
        return volume

    def create_snapshot(self, name: str, source: str) -> csi_pb2.Snapshot:
        request = csi_pb2.CreateSnapshotRequest(name=name, source_volume_id=source)
        snapshot = self.controller.CreateSnapshot(request, timeout=CALL_TIMEOUT).snapshot
        if snapshot.snapshot_id not in self.snapshots:
            self.snapshots.append(snapshot.snapshot_id)
        return snapshot

    def cleanup(self) -> None:
        for plugin, volume_id, path in reversed(self.published):
            with _ignored():
                plugin.node.NodeUnpublishVolume(
                    csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=str(path)),
                    timeout=CALL_TIMEOUT,
                )
        for plugin, volume_id, path in reversed(self.staged):
            with _ignored():
                plugin.node.NodeUnstageVolume(
                    csi_pb2.NodeUnstageVolumeRequest(
                        volume_id=volume_id, staging_target_path=str(path)
                    ),
                    timeout=CALL_TIMEOUT,
                )
        for snapshot_id in self.snapshots:
            with _ignored():
                self.controller.DeleteSnapshot(
                    csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot_id), timeout=CALL_TIMEOUT
                )
        for volume_id in self.volumes:
            with _ignored():
                self.controller.ControllerUnpublishVolume(
                    csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id),
                    timeout=CALL_TIMEOUT,
                )
            with _ignored():
                self.controller.DeleteVolume(
                    csi_pb2.DeleteVolumeRequest(volume_id=volume_id), timeout=CALL_TIMEOUT
                )


class _ignored:
    """Cleanup goes on past a failed call; the module's leak check catches what remains."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, err: object, tb: object) -> bool:
        return isinstance(err, grpc.RpcError)


@pytest.fixture
def res(sanity: Sanity) -> Iterator[Resources]:
    resources = Resources(sanity)
    yield resources
    resources.cleanup()


def emulator_disk_ids(info: EmulatorInfo) -> set[str]:
    return {d["id"] for d in info.admin("GET", "disks")["disks"]}


# ----------------------------------------------------------------------------- Identity


@pytest.mark.parametrize("which", ["controller", "node"])
def test_plugin_info_names_the_driver(sanity: Sanity, which: str) -> None:
    plugin = getattr(sanity.attach, which)
    reply = plugin.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=CALL_TIMEOUT)
    assert reply.name == DRIVER_NAME
    # The spec's form for a name: at most 63 characters, domain-like.
    assert re.fullmatch(r"[a-zA-Z][A-Za-z0-9.\-_]{0,61}[a-zA-Z]", reply.name)
    assert reply.vendor_version


def test_plugin_capabilities(sanity: Sanity) -> None:
    def services(plugin: Plugin) -> set[int]:
        reply = plugin.identity.GetPluginCapabilities(
            csi_pb2.GetPluginCapabilitiesRequest(), timeout=CALL_TIMEOUT
        )
        return {c.service.type for c in reply.capabilities if c.HasField("service")}

    controller, node = services(sanity.attach.controller), services(sanity.attach.node)
    assert {Service.CONTROLLER_SERVICE, Service.VOLUME_ACCESSIBILITY_CONSTRAINTS} <= controller
    assert Service.VOLUME_ACCESSIBILITY_CONSTRAINTS in node
    assert Service.CONTROLLER_SERVICE not in node


@pytest.mark.parametrize("which", ["controller", "node"])
def test_probe_is_ready(sanity: Sanity, which: str) -> None:
    plugin = getattr(sanity.local, which)
    reply = plugin.identity.Probe(csi_pb2.ProbeRequest(), timeout=CALL_TIMEOUT)
    assert reply.ready.value is True


# ----------------------------------------------------------------------------- Controller


def controller_caps(plugin: Plugin) -> set[int]:
    reply = plugin.controller.ControllerGetCapabilities(
        csi_pb2.ControllerGetCapabilitiesRequest(), timeout=CALL_TIMEOUT
    )
    return {c.rpc.type for c in reply.capabilities}


def test_controller_capabilities_follow_the_attach_mode(sanity: Sanity) -> None:
    attach, local = (
        controller_caps(sanity.attach.controller),
        controller_caps(sanity.local.controller),
    )
    common = {
        CtrlRPC.CREATE_DELETE_VOLUME,
        CtrlRPC.LIST_VOLUMES,
        CtrlRPC.GET_VOLUME,
        CtrlRPC.CREATE_DELETE_SNAPSHOT,
        CtrlRPC.LIST_SNAPSHOTS,
        CtrlRPC.EXPAND_VOLUME,
    }
    assert common <= attach and common <= local
    assert CtrlRPC.PUBLISH_UNPUBLISH_VOLUME in attach
    assert CtrlRPC.PUBLISH_UNPUBLISH_VOLUME not in local
    # Not advertised, so csi-sanity skips those checks: no cloning, no readonly attach.
    assert CtrlRPC.CLONE_VOLUME not in attach
    assert CtrlRPC.PUBLISH_READONLY not in attach
    assert CtrlRPC.UNKNOWN not in attach | local


def test_publish_is_unimplemented_in_node_attach_mode(sanity: Sanity) -> None:
    request = csi_pb2.ControllerPublishVolumeRequest(
        volume_id=MISSING_VOLUME, node_id=sanity.local.node_id, volume_capability=mount_cap()
    )
    assert code_of(sanity.local.controller.controller.ControllerPublishVolume, request) == (
        Code.UNIMPLEMENTED
    )


def test_create_volume_requires_name_and_capabilities(res: Resources) -> None:
    create = res.controller.CreateVolume
    assert code_of(create, csi_pb2.CreateVolumeRequest()) == Code.INVALID_ARGUMENT
    no_caps = csi_pb2.CreateVolumeRequest(name=unique("no-caps"))
    assert code_of(create, no_caps) == Code.INVALID_ARGUMENT
    unknown_mode = csi_pb2.CreateVolumeRequest(
        name=unique("unknown-mode"), volume_capabilities=[mount_cap(AccessMode.UNKNOWN)]
    )
    assert code_of(create, unknown_mode) == Code.INVALID_ARGUMENT


def test_create_volume_without_capacity(res: Resources, sanity: Sanity) -> None:
    volume = res.create_volume(unique("no-capacity"))
    assert volume.volume_id in emulator_disk_ids(sanity.info)
    assert volume.capacity_bytes > 0
    assert volume.accessible_topology
    assert volume.accessible_topology[0].segments[ZONE_KEY] == sanity.info.zones[0]


def test_create_volume_honours_the_capacity_range(res: Resources) -> None:
    required, limit = 20 * GIB + 1, 22 * GIB
    volume = res.create_volume(
        unique("capacity"),
        capacity_range=csi_pb2.CapacityRange(required_bytes=required, limit_bytes=limit),
    )
    assert required <= volume.capacity_bytes <= limit
    exact = res.create_volume(
        unique("exact"),
        capacity_range=csi_pb2.CapacityRange(required_bytes=30 * GIB, limit_bytes=30 * GIB),
    )
    assert exact.capacity_bytes == 30 * GIB


def test_create_volume_refuses_impossible_ranges(res: Resources) -> None:
    create = res.controller.CreateVolume
    inverted = csi_pb2.CreateVolumeRequest(
        name=unique("inverted"),
        volume_capabilities=[mount_cap()],
        capacity_range=csi_pb2.CapacityRange(required_bytes=30 * GIB, limit_bytes=20 * GIB),
    )
    assert code_of(create, inverted) == Code.INVALID_ARGUMENT
    # Every category of the class needs at least 20 GiB: no size fits under a 1 GiB limit.
    too_small = csi_pb2.CreateVolumeRequest(
        name=unique("too-small"),
        volume_capabilities=[mount_cap()],
        parameters={"type": "cloud_ssd"},
        capacity_range=csi_pb2.CapacityRange(required_bytes=GIB, limit_bytes=GIB),
    )
    assert code_of(create, too_small) == Code.OUT_OF_RANGE


def test_create_volume_is_idempotent(res: Resources, sanity: Sanity) -> None:
    name = unique("twice")
    capacity = csi_pb2.CapacityRange(required_bytes=20 * GIB)
    first = res.create_volume(name, capacity_range=capacity)
    creates = sanity.info.calls().get("CreateDisk", 0)
    second = res.create_volume(name, capacity_range=capacity)
    assert second.volume_id == first.volume_id
    assert second.capacity_bytes >= 20 * GIB
    assert sanity.info.calls().get("CreateDisk", 0) == creates
    longest = res.create_volume(unique("maxlen").ljust(128, "x"))
    assert longest.volume_id


def test_create_volume_same_name_other_capacity_already_exists(res: Resources) -> None:
    name = unique("twice-different")
    res.create_volume(
        name, capacity_range=csi_pb2.CapacityRange(required_bytes=20 * GIB, limit_bytes=20 * GIB)
    )
    other = csi_pb2.CreateVolumeRequest(
        name=name,
        volume_capabilities=[mount_cap()],
        capacity_range=csi_pb2.CapacityRange(required_bytes=40 * GIB, limit_bytes=40 * GIB),
    )
    assert code_of(res.controller.CreateVolume, other) == Code.ALREADY_EXISTS


def test_create_volume_from_sources(res: Resources) -> None:
    missing = csi_pb2.CreateVolumeRequest(
        name=unique("from-missing"),
        volume_capabilities=[mount_cap()],
        volume_content_source=csi_pb2.VolumeContentSource(
            snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=MISSING_SNAPSHOT)
        ),
    )
    assert code_of(res.controller.CreateVolume, missing) == Code.NOT_FOUND
    source = res.create_volume(unique("clone-source"))
    clone = csi_pb2.CreateVolumeRequest(
        name=unique("clone"),
        volume_capabilities=[mount_cap()],
        volume_content_source=csi_pb2.VolumeContentSource(
            volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=source.volume_id)
        ),
    )
    # The spec's code for a source the plugin cannot create from (CLONE_VOLUME is not
    # advertised): INVALID_ARGUMENT.
    assert code_of(res.controller.CreateVolume, clone) == Code.INVALID_ARGUMENT


def test_delete_volume(res: Resources, sanity: Sanity) -> None:
    delete = res.controller.DeleteVolume
    assert code_of(delete, csi_pb2.DeleteVolumeRequest()) == Code.INVALID_ARGUMENT
    delete(csi_pb2.DeleteVolumeRequest(volume_id=MISSING_VOLUME), timeout=CALL_TIMEOUT)
    volume = res.create_volume(unique("delete"))
    for _ in range(2):
        delete(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id), timeout=CALL_TIMEOUT)
    assert volume.volume_id not in emulator_disk_ids(sanity.info)


def test_malformed_ids_are_invalid_arguments(res: Resources) -> None:
    """csi-sanity expects OK for DeleteVolume/DeleteSnapshot of "an invalid id" and an empty
    ListSnapshots for ``none-exist-id``. The driver answers INVALID_ARGUMENT, by design
    (DESIGN.md, "Volume ids"): an id that could never name an ECS resource is a caller's
    bug, refused before it reaches a log line or an ECS call, while a well-formed id that
    names nothing gets the spec's OK (see ``test_delete_volume``)."""
    controller = res.controller
    assert (
        code_of(controller.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id="fake-volume-id"))
        == Code.INVALID_ARGUMENT
    )
    assert (
        code_of(
            controller.DeleteSnapshot,
            csi_pb2.DeleteSnapshotRequest(snapshot_id="reallyfakesnapshotid"),
        )
        == Code.INVALID_ARGUMENT
    )
    assert (
        code_of(controller.ListSnapshots, csi_pb2.ListSnapshotsRequest(snapshot_id="none-exist-id"))
        == Code.INVALID_ARGUMENT
    )


def test_validate_volume_capabilities(res: Resources) -> None:
    validate = res.controller.ValidateVolumeCapabilities
    assert code_of(validate, csi_pb2.ValidateVolumeCapabilitiesRequest()) == Code.INVALID_ARGUMENT
    volume = res.create_volume(unique("validate"))
    no_caps = csi_pb2.ValidateVolumeCapabilitiesRequest(volume_id=volume.volume_id)
    assert code_of(validate, no_caps) == Code.INVALID_ARGUMENT
    missing = csi_pb2.ValidateVolumeCapabilitiesRequest(
        volume_id=MISSING_VOLUME, volume_capabilities=[mount_cap()]
    )
    assert code_of(validate, missing) == Code.NOT_FOUND
    reply = validate(
        csi_pb2.ValidateVolumeCapabilitiesRequest(
            volume_id=volume.volume_id, volume_capabilities=[mount_cap()]
        ),
        timeout=CALL_TIMEOUT,
    )
    assert list(reply.confirmed.volume_capabilities) == [mount_cap()]
    # Two nodes writing one ext4 corrupt it: not confirmed, and the reply says why.
    refused = validate(
        csi_pb2.ValidateVolumeCapabilitiesRequest(
            volume_id=volume.volume_id,
            volume_capabilities=[mount_cap(AccessMode.MULTI_NODE_MULTI_WRITER)],
        ),
        timeout=CALL_TIMEOUT,
    )
    assert not refused.HasField("confirmed")
    assert refused.message


def test_list_volumes_pages_cover_every_volume_once(res: Resources, sanity: Sanity) -> None:
    made = {res.create_volume(unique(f"list-{i}")).volume_id for i in range(3)}
    listed: list[str] = []
    token = ""
    pages = 0
    while True:
        reply = res.controller.ListVolumes(
            csi_pb2.ListVolumesRequest(max_entries=2, starting_token=token), timeout=CALL_TIMEOUT
        )
        assert len(reply.entries) <= 2
        listed.extend(e.volume.volume_id for e in reply.entries)
        for entry in reply.entries:
            assert entry.volume.capacity_bytes > 0
        pages += 1
        token = reply.next_token
        if not token:
            break
        assert pages < 100, "ListVolumes never ends"
    assert len(listed) == len(set(listed)), "a volume was listed twice"
    assert set(listed) == emulator_disk_ids(sanity.info)
    assert made <= set(listed)
    assert pages >= 2
    everything = res.controller.ListVolumes(csi_pb2.ListVolumesRequest(), timeout=CALL_TIMEOUT)
    assert {e.volume.volume_id for e in everything.entries} == set(listed)


def test_list_volumes_reflects_deletes(res: Resources) -> None:
    def ids() -> set[str]:
        reply = res.controller.ListVolumes(csi_pb2.ListVolumesRequest(), timeout=CALL_TIMEOUT)
        return {e.volume.volume_id for e in reply.entries}

    volume = res.create_volume(unique("list-delete"))
    assert volume.volume_id in ids()
    res.controller.DeleteVolume(
        csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id), timeout=CALL_TIMEOUT
    )
    assert volume.volume_id not in ids()


@pytest.mark.parametrize("token", ["invalid-token", "v1:not-a-cloud-token"])
def test_list_volumes_invalid_token_is_aborted(sanity: Sanity, token: str) -> None:
    request = csi_pb2.ListVolumesRequest(starting_token=token)
    assert code_of(sanity.attach.controller.controller.ListVolumes, request) == Code.ABORTED


def test_controller_publish_argument_checks(sanity: Sanity, res: Resources) -> None:
    publish = res.controller.ControllerPublishVolume
    node_id = sanity.attach.node_id
    Request = csi_pb2.ControllerPublishVolumeRequest
    assert code_of(publish, Request()) == Code.INVALID_ARGUMENT
    assert code_of(publish, Request(volume_id=MISSING_VOLUME)) == Code.INVALID_ARGUMENT
    no_cap = Request(volume_id=MISSING_VOLUME, node_id=node_id)
    assert code_of(publish, no_cap) == Code.INVALID_ARGUMENT
    missing_volume = Request(
        volume_id=MISSING_VOLUME, node_id=node_id, volume_capability=mount_cap()
    )
    assert code_of(publish, missing_volume) == Code.NOT_FOUND
    volume = res.create_volume(unique("publish-missing-node"))
    missing_node = Request(
        volume_id=volume.volume_id, node_id=MISSING_NODE, volume_capability=mount_cap()
    )
    assert code_of(publish, missing_node) == Code.NOT_FOUND


def test_controller_publish_to_a_second_node(sanity: Sanity, res: Resources) -> None:
    """Published on one running node, a single-node volume is not taken by another: the
    spec's FAILED_PRECONDITION, naming the node that holds it."""
    publish = res.controller.ControllerPublishVolume
    volume = res.create_volume(unique("second-node"))
    first, second = sanity.attach.node_id, sanity.local.node_id

    def request(node_id: str) -> Any:
        return csi_pb2.ControllerPublishVolumeRequest(
            volume_id=volume.volume_id, node_id=node_id, volume_capability=mount_cap()
        )

    reply = publish(request(first), timeout=CALL_TIMEOUT)
    assert reply.publish_context
    with pytest.raises(grpc.RpcError) as err:
        publish(request(second), timeout=CALL_TIMEOUT)
    assert err.value.code() == Code.FAILED_PRECONDITION
    assert first in (err.value.details() or "")
    rows = sanity.info.admin("GET", "disks")["attachments"]
    assert {r["instance_id"] for r in rows if r["disk_id"] == volume.volume_id} == {first}


def test_controller_unpublish(sanity: Sanity, res: Resources) -> None:
    unpublish = res.controller.ControllerUnpublishVolume
    Request = csi_pb2.ControllerUnpublishVolumeRequest
    assert code_of(unpublish, Request()) == Code.INVALID_ARGUMENT
    # The spec: a volume or node the plugin cannot find is safely unpublished -> OK.
    unpublish(
        Request(volume_id=MISSING_VOLUME, node_id=sanity.attach.node_id), timeout=CALL_TIMEOUT
    )
    volume = res.create_volume(unique("unpublish-missing-node"))
    unpublish(Request(volume_id=volume.volume_id, node_id=MISSING_NODE), timeout=CALL_TIMEOUT)


def test_controller_get_volume(res: Resources) -> None:
    get = res.controller.ControllerGetVolume
    assert code_of(get, csi_pb2.ControllerGetVolumeRequest()) == Code.INVALID_ARGUMENT
    missing = csi_pb2.ControllerGetVolumeRequest(volume_id=MISSING_VOLUME)
    assert code_of(get, missing) == Code.NOT_FOUND
    volume = res.create_volume(unique("get"))
    reply = get(
        csi_pb2.ControllerGetVolumeRequest(volume_id=volume.volume_id), timeout=CALL_TIMEOUT
    )
    assert reply.volume.volume_id == volume.volume_id
    assert reply.volume.capacity_bytes == volume.capacity_bytes
    assert list(reply.status.published_node_ids) == []
    assert reply.status.volume_condition.abnormal is False


def test_controller_expand_volume(res: Resources, sanity: Sanity) -> None:
    expand = res.controller.ControllerExpandVolume
    Request = csi_pb2.ControllerExpandVolumeRequest
    no_id = Request(capacity_range=csi_pb2.CapacityRange(required_bytes=21 * GIB))
    assert code_of(expand, no_id) == Code.INVALID_ARGUMENT
    assert code_of(expand, Request()) == Code.INVALID_ARGUMENT
    volume = res.create_volume(
        unique("expand"), capacity_range=csi_pb2.CapacityRange(required_bytes=20 * GIB)
    )
    no_range = Request(volume_id=volume.volume_id)
    assert code_of(expand, no_range) == Code.INVALID_ARGUMENT
    missing = Request(
        volume_id=MISSING_VOLUME, capacity_range=csi_pb2.CapacityRange(required_bytes=21 * GIB)
    )
    assert code_of(expand, missing) == Code.NOT_FOUND
    reply = expand(
        Request(
            volume_id=volume.volume_id,
            capacity_range=csi_pb2.CapacityRange(required_bytes=21 * GIB),
            volume_capability=mount_cap(),
        ),
        timeout=CALL_TIMEOUT,
    )
    assert reply.capacity_bytes == 21 * GIB
    assert reply.node_expansion_required is True
    disks = {d["id"]: d for d in sanity.info.admin("GET", "disks")["disks"]}
    assert disks[volume.volume_id]["size"] == 21


# ----------------------------------------------------------------------------- Snapshots


def test_create_snapshot_argument_checks(res: Resources) -> None:
    create = res.controller.CreateSnapshot
    Request = csi_pb2.CreateSnapshotRequest
    assert code_of(create, Request(source_volume_id=MISSING_VOLUME)) == Code.INVALID_ARGUMENT
    assert code_of(create, Request(name=unique("snap-no-source"))) == Code.INVALID_ARGUMENT
    missing_source = Request(name=unique("snap-missing-source"), source_volume_id=MISSING_VOLUME)
    assert code_of(create, missing_source) == Code.NOT_FOUND


def test_create_snapshot_is_idempotent(res: Resources) -> None:
    first_volume = res.create_volume(unique("snap-source"))
    name = unique("snap").ljust(128, "x")  # csi-sanity also checks the longest name
    snapshot = res.create_snapshot(name, first_volume.volume_id)
    assert snapshot.snapshot_id
    assert snapshot.source_volume_id == first_volume.volume_id
    assert snapshot.creation_time.seconds > 0
    again = res.create_snapshot(name, first_volume.volume_id)
    assert again.snapshot_id == snapshot.snapshot_id
    other_volume = res.create_volume(unique("snap-other-source"))
    other = csi_pb2.CreateSnapshotRequest(name=name, source_volume_id=other_volume.volume_id)
    assert code_of(res.controller.CreateSnapshot, other) == Code.ALREADY_EXISTS


def test_list_snapshots_filters_and_pages(res: Resources, sanity: Sanity) -> None:
    volume_a = res.create_volume(unique("snap-a"))
    volume_b = res.create_volume(unique("snap-b"))
    a1 = res.create_snapshot(unique("a1"), volume_a.volume_id)
    a2 = res.create_snapshot(unique("a2"), volume_a.volume_id)
    b1 = res.create_snapshot(unique("b1"), volume_b.volume_id)
    list_ = res.controller.ListSnapshots
    Request = csi_pb2.ListSnapshotsRequest

    def ids(request: Any) -> list[str]:
        return [e.snapshot.snapshot_id for e in list_(request, timeout=CALL_TIMEOUT).entries]

    assert ids(Request(snapshot_id=a2.snapshot_id)) == [a2.snapshot_id]
    assert sorted(ids(Request(source_volume_id=volume_a.volume_id))) == sorted(
        [a1.snapshot_id, a2.snapshot_id]
    )
    assert ids(Request(source_volume_id=volume_b.volume_id)) == [b1.snapshot_id]
    assert ids(Request(snapshot_id=MISSING_SNAPSHOT)) == []
    assert ids(Request(source_volume_id=MISSING_VOLUME)) == []
    every = list_(Request(), timeout=CALL_TIMEOUT).entries
    for entry in every:
        assert entry.snapshot.snapshot_id and entry.snapshot.source_volume_id
        assert entry.snapshot.creation_time.seconds > 0
    listed: list[str] = []
    token = ""
    for _ in range(100):
        reply = list_(Request(max_entries=1, starting_token=token), timeout=CALL_TIMEOUT)
        assert len(reply.entries) <= 1
        listed.extend(e.snapshot.snapshot_id for e in reply.entries)
        token = reply.next_token
        if not token:
            break
    assert len(listed) == len(set(listed)), "a snapshot was listed twice"
    emulator = {s["id"] for s in sanity.info.admin("GET", "snapshots")["snapshots"]}
    assert set(listed) == {e.snapshot.snapshot_id for e in every} == emulator
    # csi-sanity: after a limited page, the token with no limit returns all the rest.
    first = list_(Request(max_entries=2), timeout=CALL_TIMEOUT)
    rest = list_(Request(starting_token=first.next_token), timeout=CALL_TIMEOUT)
    assert len(first.entries) + len(rest.entries) == len(every)
    assert code_of(list_, Request(starting_token="invalid-token")) == Code.ABORTED


def test_delete_snapshot(res: Resources, sanity: Sanity) -> None:
    delete = res.controller.DeleteSnapshot
    assert code_of(delete, csi_pb2.DeleteSnapshotRequest()) == Code.INVALID_ARGUMENT
    delete(csi_pb2.DeleteSnapshotRequest(snapshot_id=MISSING_SNAPSHOT), timeout=CALL_TIMEOUT)
    volume = res.create_volume(unique("snap-delete"))
    snapshot = res.create_snapshot(unique("delete"), volume.volume_id)
    for _ in range(2):
        delete(
            csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot.snapshot_id), timeout=CALL_TIMEOUT
        )
    remaining = {s["id"] for s in sanity.info.admin("GET", "snapshots")["snapshots"]}
    assert snapshot.snapshot_id not in remaining


# ----------------------------------------------------------------------------- Node


def node_paths(side: Side, name: str) -> tuple[Path, Path]:
    """Staging and target paths laid out as the kubelet lays them out."""
    staging = side.kubelet / "plugins/kubernetes.io/csi" / DRIVER_NAME / name / "globalmount"
    target = side.kubelet / "pods" / name / "volumes/kubernetes.io~csi" / name / "mount"
    staging.mkdir(parents=True, exist_ok=True)  # the kubelet makes the staging directory
    target.parent.mkdir(parents=True, exist_ok=True)
    return staging, target


@pytest.mark.parametrize("mode", ["attach", "local"])
def test_node_get_info_and_capabilities(sanity: Sanity, mode: str) -> None:
    side: Side = getattr(sanity, mode)
    info = side.node.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=CALL_TIMEOUT)
    assert info.node_id == side.node_id
    assert info.max_volumes_per_node >= 0
    segments = dict(info.accessible_topology.segments)
    assert segments[ZONE_KEY] == segments[K8S_ZONE_KEY] == sanity.info.zones[0]
    caps = side.node.node.NodeGetCapabilities(
        csi_pb2.NodeGetCapabilitiesRequest(), timeout=CALL_TIMEOUT
    )
    kinds = {c.rpc.type for c in caps.capabilities}
    assert {NodeRPC.STAGE_UNSTAGE_VOLUME, NodeRPC.GET_VOLUME_STATS, NodeRPC.EXPAND_VOLUME} <= kinds
    assert NodeRPC.UNKNOWN not in kinds


@pytest.mark.parametrize("mode", ["attach", "local"])
def test_node_argument_checks(sanity: Sanity, mode: str) -> None:
    side: Side = getattr(sanity, mode)
    node = side.node.node
    staging, target = node_paths(side, unique("args"))
    cap = mount_cap()
    Stage, Unstage = csi_pb2.NodeStageVolumeRequest, csi_pb2.NodeUnstageVolumeRequest
    Publish, Unpublish = csi_pb2.NodePublishVolumeRequest, csi_pb2.NodeUnpublishVolumeRequest
    invalid = [
        (node.NodeStageVolume, Stage(staging_target_path=str(staging), volume_capability=cap)),
        (node.NodeStageVolume, Stage(volume_id=MISSING_VOLUME, volume_capability=cap)),
        (node.NodeStageVolume, Stage(volume_id=MISSING_VOLUME, staging_target_path=str(staging))),
        (node.NodeUnstageVolume, Unstage(staging_target_path=str(staging))),
        (node.NodeUnstageVolume, Unstage(volume_id=MISSING_VOLUME)),
        (node.NodePublishVolume, Publish()),
        (node.NodePublishVolume, Publish(volume_id=MISSING_VOLUME)),
        (
            node.NodePublishVolume,
            Publish(
                volume_id=MISSING_VOLUME, target_path=str(target), staging_target_path=str(staging)
            ),
        ),
        (node.NodeUnpublishVolume, Unpublish()),
        (node.NodeUnpublishVolume, Unpublish(volume_id=MISSING_VOLUME)),
        (node.NodeGetVolumeStats, csi_pb2.NodeGetVolumeStatsRequest(volume_path=str(target))),
        (node.NodeGetVolumeStats, csi_pb2.NodeGetVolumeStatsRequest(volume_id=MISSING_VOLUME)),
        (node.NodeExpandVolume, csi_pb2.NodeExpandVolumeRequest(volume_path=str(target))),
        (node.NodeExpandVolume, csi_pb2.NodeExpandVolumeRequest(volume_id=MISSING_VOLUME)),
    ]
    for call, request in invalid:
        assert code_of(call, request) == Code.INVALID_ARGUMENT, (call, request)
    # The spec: STAGE_UNSTAGE_VOLUME is advertised but no staging path was set.
    unstaged = Publish(volume_id=MISSING_VOLUME, target_path=str(target), volume_capability=cap)
    assert code_of(node.NodePublishVolume, unstaged) == Code.FAILED_PRECONDITION


@pytest.mark.parametrize("mode", ["attach", "local"])
def test_node_calls_on_a_missing_volume(sanity: Sanity, mode: str) -> None:
    side: Side = getattr(sanity, mode)
    node = side.node.node
    staging, target = node_paths(side, unique("missing"))
    # Unpublish and unstage are idempotent: nothing there is already done.
    node.NodeUnpublishVolume(
        csi_pb2.NodeUnpublishVolumeRequest(volume_id=MISSING_VOLUME, target_path=str(target)),
        timeout=CALL_TIMEOUT,
    )
    node.NodeUnstageVolume(
        csi_pb2.NodeUnstageVolumeRequest(
            volume_id=MISSING_VOLUME, staging_target_path=str(staging)
        ),
        timeout=CALL_TIMEOUT,
    )
    stats = csi_pb2.NodeGetVolumeStatsRequest(volume_id=MISSING_VOLUME, volume_path=str(target))
    assert code_of(node.NodeGetVolumeStats, stats) == Code.NOT_FOUND
    expand = csi_pb2.NodeExpandVolumeRequest(volume_id=MISSING_VOLUME, volume_path=str(target))
    assert code_of(node.NodeExpandVolume, expand) == Code.NOT_FOUND


def run_lifecycle(sanity: Sanity, side: Side, res: Resources, *, controller_attach: bool) -> None:
    """create -> publish -> stage -> publish -> stats -> unpublish -> unstage -> unpublish
    -> delete, each call made twice: the second must succeed and change nothing."""
    name = unique("lifecycle")
    info = side.node.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=CALL_TIMEOUT)
    volume = res.create_volume(
        name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=20 * GIB),
        accessibility_requirements=csi_pb2.TopologyRequirement(
            requisite=[info.accessible_topology]
        ),
    )
    controller = side.controller.controller
    node = side.node.node
    volume_id = volume.volume_id
    staging, target = node_paths(side, name)
    publish_context: dict[str, str] = {}
    if controller_attach:
        for _ in range(2):
            reply = controller.ControllerPublishVolume(
                csi_pb2.ControllerPublishVolumeRequest(
                    volume_id=volume_id,
                    node_id=info.node_id,
                    volume_capability=mount_cap(),
                    volume_context=volume.volume_context,
                ),
                timeout=CALL_TIMEOUT,
            )
            publish_context = dict(reply.publish_context)
        got = controller.ControllerGetVolume(
            csi_pb2.ControllerGetVolumeRequest(volume_id=volume_id), timeout=CALL_TIMEOUT
        )
        assert list(got.status.published_node_ids) == [info.node_id]
    res.staged.append((side.node, volume_id, staging))
    for _ in range(2):
        node.NodeStageVolume(
            csi_pb2.NodeStageVolumeRequest(
                volume_id=volume_id,
                staging_target_path=str(staging),
                volume_capability=mount_cap(),
                publish_context=publish_context,
                volume_context=volume.volume_context,
            ),
            timeout=CALL_TIMEOUT,
        )
    assert is_mounted(staging)
    res.published.append((side.node, volume_id, target))
    for _ in range(2):
        node.NodePublishVolume(
            csi_pb2.NodePublishVolumeRequest(
                volume_id=volume_id,
                staging_target_path=str(staging),
                target_path=str(target),
                volume_capability=mount_cap(),
                publish_context=publish_context,
                volume_context=volume.volume_context,
            ),
            timeout=CALL_TIMEOUT,
        )
    assert is_mounted(target)
    (target / "probe").write_text("written through the target\n", encoding="utf-8")
    assert (staging / "probe").read_text(encoding="utf-8") == "written through the target\n"
    stats = node.NodeGetVolumeStats(
        csi_pb2.NodeGetVolumeStatsRequest(volume_id=volume_id, volume_path=str(target)),
        timeout=CALL_TIMEOUT,
    )
    units = {u.unit: u for u in stats.usage}
    assert units[csi_pb2.VolumeUsage.BYTES].total > 0
    assert units[csi_pb2.VolumeUsage.INODES].total > 0
    assert stats.volume_condition.abnormal is False
    for _ in range(2):
        node.NodeUnpublishVolume(
            csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=str(target)),
            timeout=CALL_TIMEOUT,
        )
    assert not is_mounted(target)
    # The spec: the plugin removes the target it made.
    assert not target.exists()
    for _ in range(2):
        node.NodeUnstageVolume(
            csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=str(staging)),
            timeout=CALL_TIMEOUT,
        )
    assert not is_mounted(staging)
    if controller_attach:
        for _ in range(2):
            controller.ControllerUnpublishVolume(
                csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=info.node_id),
                timeout=CALL_TIMEOUT,
            )
    rows = sanity.info.admin("GET", "disks")["attachments"]
    assert not [r for r in rows if r["disk_id"] == volume_id], "the disk is still attached"
    for _ in range(2):
        controller.DeleteVolume(
            csi_pb2.DeleteVolumeRequest(volume_id=volume_id), timeout=CALL_TIMEOUT
        )
    assert volume_id not in emulator_disk_ids(sanity.info)


def test_lifecycle_in_controller_attach_mode(sanity: Sanity, res: Resources) -> None:
    run_lifecycle(sanity, sanity.attach, res, controller_attach=True)


def test_lifecycle_in_node_attach_mode(sanity: Sanity, res: Resources) -> None:
    run_lifecycle(sanity, sanity.local, res, controller_attach=False)


def stage_and_publish(
    side: Side, res: Resources, volume: csi_pb2.Volume, fs_type: str = ""
) -> Path:
    """Stage and publish ``volume`` on ``side``'s node (node attach mode); the target."""
    staging, target = node_paths(side, volume.volume_id)
    cap = mount_cap(fs_type=fs_type)
    res.staged.append((side.node, volume.volume_id, staging))
    side.node.node.NodeStageVolume(
        csi_pb2.NodeStageVolumeRequest(
            volume_id=volume.volume_id,
            staging_target_path=str(staging),
            volume_capability=cap,
            volume_context=volume.volume_context,
        ),
        timeout=CALL_TIMEOUT,
    )
    res.published.append((side.node, volume.volume_id, target))
    side.node.node.NodePublishVolume(
        csi_pb2.NodePublishVolumeRequest(
            volume_id=volume.volume_id,
            staging_target_path=str(staging),
            target_path=str(target),
            volume_capability=cap,
            volume_context=volume.volume_context,
        ),
        timeout=CALL_TIMEOUT,
    )
    return target


def test_volume_stats_answer_for_the_volume_at_the_path(sanity: Sanity, res: Resources) -> None:
    """The spec's NOT_FOUND when the volume is not the one at ``volume_path``; a volume not
    attached to the node at all is reported as an abnormal condition, not another's usage."""
    side = sanity.local
    stats = side.node.node.NodeGetVolumeStats
    first = res.create_volume(unique("stats-a"))
    second = res.create_volume(unique("stats-b"))
    detached = res.create_volume(unique("stats-c"))
    first_target = stage_and_publish(side, res, first)
    stage_and_publish(side, res, second)

    def request(volume: csi_pb2.Volume) -> Any:
        return csi_pb2.NodeGetVolumeStatsRequest(
            volume_id=volume.volume_id, volume_path=str(first_target)
        )

    own = stats(request(first), timeout=CALL_TIMEOUT)
    assert own.usage and own.volume_condition.abnormal is False
    assert code_of(stats, request(second)) == Code.NOT_FOUND
    elsewhere = stats(request(detached), timeout=CALL_TIMEOUT)
    assert not elsewhere.usage
    assert elsewhere.volume_condition.abnormal is True


def test_volume_from_a_ready_snapshot(res: Resources) -> None:
    """csi-sanity: CreateSnapshot is called again until ready, then a volume restores it."""
    source = res.create_volume(unique("restore-source"))
    name = unique("restore-snap")
    snapshot = res.create_snapshot(name, source.volume_id)
    for _ in range(600):
        if snapshot.ready_to_use:
            break
        snapshot = res.create_snapshot(name, source.volume_id)
    assert snapshot.ready_to_use
    restored = res.create_volume(
        unique("restored"),
        volume_content_source=csi_pb2.VolumeContentSource(
            snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=snapshot.snapshot_id)
        ),
    )
    assert restored.content_source.snapshot.snapshot_id == snapshot.snapshot_id
    assert restored.capacity_bytes >= snapshot.size_bytes
    smaller = csi_pb2.CreateVolumeRequest(
        name=unique("restored-smaller"),
        volume_capabilities=[mount_cap()],
        capacity_range=csi_pb2.CapacityRange(limit_bytes=snapshot.size_bytes - GIB),
        volume_content_source=restored.content_source,
    )
    # The spec's example of an unsupported capacity range: smaller than the snapshot.
    assert code_of(res.controller.CreateVolume, smaller) == Code.OUT_OF_RANGE


def test_node_expand_after_publish(sanity: Sanity, res: Resources) -> None:
    """csi-sanity: ControllerExpandVolume, then NodeExpandVolume on the published path."""
    side = sanity.local
    volume = res.create_volume(
        unique("node-expand"), capacity_range=csi_pb2.CapacityRange(required_bytes=20 * GIB)
    )
    # xfs grows online without CAP_SYS_RESOURCE, which online ext4 growth needs and a
    # test container may lack (that refusal is covered in tests/integration/features).
    target = stage_and_publish(side, res, volume, fs_type="xfs")

    def total_bytes() -> int:
        reply = side.node.node.NodeGetVolumeStats(
            csi_pb2.NodeGetVolumeStatsRequest(volume_id=volume.volume_id, volume_path=str(target)),
            timeout=CALL_TIMEOUT,
        )
        return next(u.total for u in reply.usage if u.unit == csi_pb2.VolumeUsage.BYTES)

    before = total_bytes()
    grown = side.controller.controller.ControllerExpandVolume(
        csi_pb2.ControllerExpandVolumeRequest(
            volume_id=volume.volume_id,
            capacity_range=csi_pb2.CapacityRange(required_bytes=21 * GIB),
            volume_capability=mount_cap(fs_type="xfs"),
        ),
        timeout=CALL_TIMEOUT,
    )
    assert grown.capacity_bytes == 21 * GIB and grown.node_expansion_required
    staging, _ = node_paths(side, volume.volume_id)
    for _ in range(2):
        reply = side.node.node.NodeExpandVolume(
            csi_pb2.NodeExpandVolumeRequest(
                volume_id=volume.volume_id,
                volume_path=str(target),
                staging_target_path=str(staging),
                capacity_range=csi_pb2.CapacityRange(required_bytes=21 * GIB),
                volume_capability=mount_cap(fs_type="xfs"),
            ),
            timeout=CALL_TIMEOUT,
        )
        assert reply.capacity_bytes >= 21 * GIB
    assert total_bytes() > before
