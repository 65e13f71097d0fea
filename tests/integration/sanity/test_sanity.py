"""Conformance checks the real csi-sanity does not make, against the real daemon.

csi-sanity itself runs in ``test_csi_sanity.py`` in all four configurations; what it
covers is not repeated here. It runs one node and never calls what the driver does not
advertise, so the checks below are the ones it cannot make: a second node, ControllerGetVolume,
ListVolumes paging (its spec is disabled in csi-test), capacity limits, and the answers of
calls that are not advertised. Every call goes through a ``csi-disk serve`` socket: one
emulator, a controller and a node plugin in controller attach mode, and another pair in node
attach mode, shared by the module.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from csi_disk import DRIVER_NAME
from csi_disk.csi_pb import csi_pb2
from csi_disk_demo.stack import EmulatorInfo, Plugin, Stack, sweep

pytestmark = [pytest.mark.root, pytest.mark.timeout(240)]

GIB = 1024**3
CALL_TIMEOUT = 120.0
Code = grpc.StatusCode
AccessMode = csi_pb2.VolumeCapability.AccessMode

# Well-formed ids that name nothing in the emulator.
MISSING_VOLUME = "d-" + "0" * 20
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


def test_publish_is_unimplemented_in_node_attach_mode(sanity: Sanity) -> None:
    """csi-sanity skips ControllerPublishVolume where PUBLISH_UNPUBLISH_VOLUME is not
    advertised; a caller that calls it anyway gets UNIMPLEMENTED, not an attach."""
    request = csi_pb2.ControllerPublishVolumeRequest(
        volume_id=MISSING_VOLUME, node_id=sanity.local.node_id, volume_capability=mount_cap()
    )
    assert code_of(sanity.local.controller.controller.ControllerPublishVolume, request) == (
        Code.UNIMPLEMENTED
    )


def test_create_volume_honours_the_capacity_range(res: Resources) -> None:
    """csi-sanity sends required_bytes only; a limit is honoured too, and sizes round up to
    whole GiB inside it."""
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
    """Ranges csi-sanity never sends: required above limit, and a limit no category fits."""
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


def test_list_volumes_pages_cover_every_volume_once(res: Resources, sanity: Sanity) -> None:
    """Paging through ListVolumes with max_entries (csi-test's own paging spec is disabled):
    every disk of the emulator once, on more than one page."""
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
    """csi-sanity unpublishes only what it published; a well-formed volume or node that
    names nothing is unpublished already (the spec's OK)."""
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
    """csi-sanity never calls ControllerGetVolume (GET_VOLUME): missing, present, status."""
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


def node_paths(side: Side, name: str) -> tuple[Path, Path]:
    """Staging and target paths laid out as the kubelet lays them out."""
    staging = side.kubelet / "plugins/kubernetes.io/csi" / DRIVER_NAME / name / "globalmount"
    target = side.kubelet / "pods" / name / "volumes/kubernetes.io~csi" / name / "mount"
    staging.mkdir(parents=True, exist_ok=True)  # the kubelet makes the staging directory
    target.parent.mkdir(parents=True, exist_ok=True)
    return staging, target


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
