"""The seed story through the driver's sockets, in both attach modes.

One emulator per module; one controller and one node plugin per instance, each a real
``csi-disk serve`` process. The Kubernetes side is ``csi_disk_demo.cluster``; every assertion
reads the outcome from somewhere independent of the driver: the emulator's records and
call counts, the files on the mounted filesystem, ``findmnt`` and ``losetup``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from csi_disk.csi_pb import csi_pb2
from csi_disk.topology import K8S_ZONE_KEY, ZONE_KEY
from csi_disk_demo.cluster import (
    GIB,
    SELECTED_NODE,
    Cluster,
    PersistentVolumeClaim,
    Pod,
    SchedulingError,
    StorageClass,
    pv_zone,
    read_text,
    write_text,
)
from csi_disk_demo.stack import EmulatorInfo, Stack, sweep

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

AWARE = StorageClass("alicloud-disk-aware", {"type": "cloud_ssd"})
FALLBACK = StorageClass("alicloud-disk-topology", {"type": "cloud_essd,cloud_ssd,cloud_efficiency"})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from tests.conftest import require_root

    require_root()
    state = tmp_path_factory.mktemp("e2e")
    with Stack(state, latency_scale=0.02) as s:
        s.start_emulator(zones=3, instances_per_zone=2)
        yield s
    mounts, loops = sweep(state)
    assert not mounts and not loops, f"leaked mounts {mounts} and loop devices {loops}"


def bring_up(stack: Stack, attach_mode: str) -> Cluster:
    stack.stop_daemons()
    info = stack.info
    assert info is not None
    controller = stack.start_controller(attach_mode)
    for instance in info.instances:
        stack.start_node(instance, attach_mode)
    stack.wait_ready()
    cluster = Cluster(controller, attach_mode=attach_mode)
    for instance in info.instances:
        cluster.register_node(stack.plugins[f"node-{instance.id}"], stack.kubelet_dir(instance.id))
    cluster.add_class(AWARE)
    cluster.add_class(FALLBACK)
    return cluster


def emulator_disks(info: EmulatorInfo) -> dict[str, dict]:
    return {d["id"]: d for d in info.admin("GET", "disks")["disks"]}


def attached_to(info: EmulatorInfo, disk_id: str) -> set[str]:
    """The instances the emulator has the disk attached to (its own records)."""
    rows = info.admin("GET", "disks")["attachments"]
    return {r["instance_id"] for r in rows if r["disk_id"] == disk_id}


def mount_source(path: Path) -> str:
    return subprocess.run(
        ["findmnt", "--noheadings", "--output", "SOURCE", "--mountpoint", str(path)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


@pytest.mark.parametrize("attach_mode", ["node", "controller"])
def test_topology_aware_story(stack: Stack, attach_mode: str) -> None:
    info = stack.info
    assert info is not None
    cluster = bring_up(stack, attach_mode)
    claim_name = f"disk-pvc-{attach_mode}"
    creates = info.calls().get("CreateDisk", 0)

    cluster.create_claim(PersistentVolumeClaim(claim_name, AWARE.name, 20 * GIB))
    assert cluster.claims[claim_name].phase == "Pending"
    assert info.calls().get("CreateDisk", 0) == creates, "a disk was created before scheduling"

    zone = info.zones[1]
    pod = Pod(name="nginx-disk-1", claim=claim_name)
    node = cluster.schedule(pod, prefer=lambda n: n.zone == zone)
    claim = cluster.claims[claim_name]
    pv = cluster.volume_of(pod)
    assert claim.phase == "Bound"
    assert claim.annotations[SELECTED_NODE] == node.name
    assert node.zone == zone
    assert pv_zone(pv) == zone
    assert dict(pv.node_affinity or []) == {ZONE_KEY: [zone]}
    disk = emulator_disks(info)[pv.volume_handle]
    assert disk["zone"] == zone
    assert disk["category"] == "cloud_ssd"
    assert info.calls().get("CreateDisk", 0) == creates + 1

    target = cluster.start_pod(pod)
    assert mount_source(target)  # a real mount, seen by findmnt
    write_text(target / "test", "hello\n")
    cluster.delete_pod(pod.name)
    assert not mount_source(target)

    again = Pod(name="nginx-disk-2", claim=claim_name)
    node2 = cluster.schedule(again, prefer=lambda n: n.name != node.name)
    assert node2.name != node.name and node2.zone == zone
    target2 = cluster.start_pod(again)
    assert sorted(p.name for p in target2.iterdir()) == ["lost+found", "test"]
    assert read_text(target2 / "test") == "hello\n"

    cluster.delete_pod(again.name)
    cluster.delete_claim(claim_name)
    assert pv.volume_handle not in emulator_disks(info)


def test_static_pv_schedules_by_zone_labels(stack: Stack) -> None:
    """A PV written by hand, as for the upstream driver, only schedules into its zone."""
    from csi_disk_demo.cluster import PersistentVolume, zone_label_pairs

    info = stack.info
    assert info is not None
    cluster = bring_up(stack, "node")
    zone, other = info.zones[0], info.zones[2]
    pod = Pod(name="seed", claim="seed-claim", node_selector={K8S_ZONE_KEY: zone})
    cluster.create_claim(PersistentVolumeClaim("seed-claim", FALLBACK.name, 20 * GIB))
    cluster.schedule(pod)
    disk_id = cluster.volume_of(pod).volume_handle
    # Forget the dynamic PV; re-introduce the same disk the static way.
    cluster.pods.pop(pod.name)
    cluster.claims.pop("seed-claim")
    cluster.volumes.clear()
    pv = PersistentVolume(
        name="static-pv",
        volume_handle=disk_id,
        capacity_bytes=20 * GIB,
        labels=zone_label_pairs(zone, info.region),
        node_affinity=[(K8S_ZONE_KEY, [zone])],
    )
    claim = PersistentVolumeClaim("static-pvc", "", 20 * GIB)
    cluster.add_static_volume(pv, claim)
    attaches = info.calls().get("AttachDisk", 0)
    with pytest.raises(SchedulingError):
        cluster.schedule(Pod(name="wrong", claim="static-pvc", node_selector={K8S_ZONE_KEY: other}))
    assert info.calls().get("AttachDisk", 0) == attaches
    cluster.pods.pop("wrong", None)
    right = Pod(name="right", claim="static-pvc")
    node = cluster.schedule(right)
    assert node.zone == zone
    target = cluster.start_pod(right)
    write_text(target / "f", "static\n")
    cluster.delete_pod(right.name)
    # Clean up through the driver: a dynamic-style delete of the disk.
    cluster.controller.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=disk_id))
    assert disk_id not in emulator_disks(info)


def test_a_volume_in_every_zone_at_once(stack: Stack) -> None:
    """Three claims whose pods land in three zones, provisioned concurrently."""
    info = stack.info
    assert info is not None
    cluster = bring_up(stack, "node")
    pods = []
    for index, zone in enumerate(info.zones):
        name = f"zone-claim-{index}"
        cluster.create_claim(PersistentVolumeClaim(name, FALLBACK.name, 20 * GIB))
        pods.append(Pod(name=f"zone-pod-{index}", claim=name, node_selector={K8S_ZONE_KEY: zone}))
    errors: list[BaseException] = []

    def place(pod: Pod) -> None:
        try:
            cluster.schedule(pod)
            target = cluster.start_pod(pod)
            write_text(target / "zone", cluster.nodes[pod.node].zone)
        except BaseException as err:  # collected and re-raised in the test thread
            errors.append(err)

    threads = [threading.Thread(target=place, args=(p,)) for p in pods]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not errors, errors
    disks = emulator_disks(info)
    seen = set()
    for pod in pods:
        pv = cluster.volume_of(pod)
        zone = pod.node_selector[K8S_ZONE_KEY]
        assert disks[pv.volume_handle]["zone"] == zone == pv_zone(pv)
        target = pod.volume_target(cluster.nodes[pod.node], pv)
        assert read_text(target / "zone") == zone
        seen.add(zone)
    assert seen == set(info.zones)
    # Whatever each zone sells, the category is one of the class's list.
    for pod in pods:
        assert disks[cluster.volume_of(pod).volume_handle]["category"] in (
            "cloud_essd", "cloud_ssd", "cloud_efficiency",
        )  # fmt: skip
    for pod in pods:
        cluster.delete_pod(pod.name)
        cluster.delete_claim(pod.claim)


def test_claim_for_a_zone_without_the_category_is_rescheduled(stack: Stack) -> None:
    """cloud_ssd is not sold in the last zone: RESOURCE_EXHAUSTED sends the pod elsewhere."""
    info = stack.info
    assert info is not None
    cluster = bring_up(stack, "node")
    last = info.zones[-1]
    request = cluster.controller.controller.CreateVolume
    with pytest.raises(grpc.RpcError) as err:
        request(
            csi_pb2.CreateVolumeRequest(
                name="no-ssd-here",
                volume_capabilities=[
                    csi_pb2.VolumeCapability(
                        mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
                        access_mode=csi_pb2.VolumeCapability.AccessMode(mode=1),
                    )
                ],
                parameters={"type": "cloud_ssd"},
                accessibility_requirements=csi_pb2.TopologyRequirement(
                    requisite=[csi_pb2.Topology(segments={K8S_ZONE_KEY: last})]
                ),
            ),
            timeout=120,
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    cluster.create_claim(PersistentVolumeClaim("resched", AWARE.name, 20 * GIB))
    pod = Pod(name="resched-pod", claim="resched")
    node = cluster.schedule(pod, prefer=lambda n: n.zone == last)
    assert node.zone != last
    assert emulator_disks(info)[cluster.volume_of(pod).volume_handle]["zone"] == node.zone
    cluster.pods.pop(pod.name)
    cluster.delete_claim("resched")


def test_node_failure_in_controller_attach_mode(stack: Stack) -> None:
    info = stack.info
    assert info is not None
    cluster = bring_up(stack, "controller")
    cluster.create_claim(PersistentVolumeClaim("ha", AWARE.name, 20 * GIB))
    pod = Pod(name="ha-1", claim="ha")
    node = cluster.schedule(pod, prefer=lambda n: n.zone == info.zones[0])
    target = cluster.start_pod(pod)
    write_text(target / "test", "survives\n")
    disk_id = cluster.volume_of(pod).volume_handle
    assert attached_to(info, disk_id) == {node.name}

    stack.stop_daemon(f"node-{node.name}")
    sweep(node.kubelet_dir)
    info.admin("POST", f"instances/{node.name}/stop")
    node.ready = False
    try:
        cluster.delete_pod(pod.name, node_lost=True)
        moved = Pod(name="ha-2", claim="ha")
        node2 = cluster.schedule(moved)
        assert node2.zone == node.zone and node2.name != node.name
        target2 = cluster.start_pod(moved)
        assert read_text(target2 / "test") == "survives\n"
        assert attached_to(info, disk_id) == {node2.name}
        cluster.delete_pod(moved.name)
        cluster.delete_claim("ha")
    finally:
        info.admin("POST", f"instances/{node.name}/start")


def test_demo_command_succeeds(tmp_path: Path) -> None:
    """The README's main command, as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "csi_disk", "demo", "--state-dir", str(tmp_path / "demo"),
         "--latency-scale", "0.05"],
        capture_output=True,
        text=True,
        timeout=280,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "checks passed." in result.stdout
    assert "FAIL" not in result.stdout
    mounts, loops = sweep(tmp_path)
    assert not mounts and not loops


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_demo_cleans_up(tmp_path: Path, signum: int) -> None:
    """Stopped in the middle of the story, the demo leaves no process, mount or loop device."""
    state = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "csi_disk", "demo", "--state-dir", str(state),
         "--latency-scale", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "mounts the disk and writes to it" in line:  # a disk is staged and published now
            break
    process.send_signal(signum)
    rest, _ = process.communicate(timeout=120)
    output = "".join(seen) + rest
    assert process.returncode == 1, output[-3000:]
    assert "interrupted" in output
    mounts, loops = sweep(state)
    assert not mounts and not loops, f"left mounts {mounts} and loop devices {loops}"
    leftovers = subprocess.run(
        ["pgrep", "-f", str(state)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftovers == [], f"processes still running: {leftovers}"
