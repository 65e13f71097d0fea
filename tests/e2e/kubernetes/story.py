"""The seed story's steps on a real cluster, shared by the attach-mode test modules.

Each step drives the cluster with kubectl and the seed's own manifests (deploy/examples), and
reads every outcome from somewhere the driver does not write: the API objects the real
controllers made, the emulator's records and call counts, and what the pod sees in /data.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from csi_disk.cloud.credentials import Credentials, StaticProvider
from csi_disk.cloud.ecs import EcsCloud
from csi_disk.cloud.port import AVAILABLE, DiskRequest
from csi_disk_demo.kube.cluster import Cluster
from csi_disk_demo.stack import leftovers
from tests.conftest import REPO_ROOT, require_root

EXAMPLES = REPO_ROOT / "deploy" / "examples"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
ZONE = "topology.kubernetes.io/zone"
DRIVER_ZONE = "topology.diskplugin.csi.alibabacloud.com/zone"
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


# ---------------------------------------------------------------------- the cluster


def host_listeners(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket the processes listen on."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(table, encoding="ascii") as f:
            next(f)
            for line in f:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state != "0A" or inode not in inodes:  # 0A: LISTEN
                    continue
                address, port = local.split(":")
                found.append((inodes[inode], decode_address(address, width), int(port, 16)))
    return found


def decode_address(hex_address: str, width: int) -> str:
    if width == 8:
        return ".".join(str(b) for b in reversed(bytes.fromhex(hex_address)))
    return hex_address


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@contextmanager
def running_cluster(state: Path, attach_mode: str) -> Iterator[Cluster]:
    """A cluster for one test module; on the way out, everything it started must be gone:
    processes, mounts, loop devices and listening ports."""
    require_root()
    cluster = Cluster(state, attach_mode, latency_scale=0.02)
    pids: set[int] = set()
    ports: set[int] = set()
    try:
        cluster.start()
        yield cluster
    finally:
        pids = set(cluster.pids())
        ports = {port for _, _, port in host_listeners(pids)}
        cluster.close()
    left = [pid for pid in pids if alive(pid)]
    assert not left, f"processes left running: {left}"
    for directory in (state, cluster.runtime_dir):
        mounts, loops = leftovers(directory)
        assert not mounts and not loops, f"left mounts {mounts} and loop devices {loops}"
    assert not cluster.runtime_dir.exists(), f"{cluster.runtime_dir} left behind"
    still = [p for p in ports if listening_on(p)]
    assert not still, f"ports still listened on after the cluster stopped: {still}"


def listening_on(port: int) -> bool:
    listing = subprocess.run(
        ["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True, check=False
    )
    return bool(listing.stdout.strip())


# ---------------------------------------------------------------------- kubectl and objects


def apply(cluster: Cluster, *objects: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(list(objects)))


def example(name: str) -> list[dict[str, Any]]:
    return [o for o in yaml.safe_load_all((EXAMPLES / name).read_text()) if o]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def claim(cluster: Cluster, name: str) -> dict[str, Any]:
    return cluster.admin.get(f"/api/v1/namespaces/default/persistentvolumeclaims/{name}")


def volume(cluster: Cluster, name: str) -> dict[str, Any]:
    return cluster.admin.get(f"/api/v1/persistentvolumes/{name}")


def bound_volume(cluster: Cluster, claim_name: str, timeout: float = 90) -> dict[str, Any]:
    def bound() -> dict[str, Any] | None:
        found = claim(cluster, claim_name)
        if found["status"].get("phase") == "Bound":
            return volume(cluster, found["spec"]["volumeName"])
        return None

    return cluster.wait(bound, f"claim {claim_name} Bound", timeout)


def affinity_zone(pv: dict[str, Any]) -> str:
    """The zone the PV's required node affinity names (the driver's or the well-known key)."""
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    for term in terms:
        for expression in term.get("matchExpressions", []):
            if expression["key"] in (ZONE, DRIVER_ZONE):
                return str(expression["values"][0])
    raise AssertionError(f"no zone in {terms}")


def running_pod(
    cluster: Cluster, app: str, timeout: float = 90, other_than: str = ""
) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        for pod in cluster.pods(selector=f"app={app}"):
            if (
                pod["status"].get("phase") == "Running"
                and not pod["metadata"].get("deletionTimestamp")
                and pod["metadata"]["name"] != other_than
                and all(c.get("ready") for c in pod["status"].get("containerStatuses", []))
            ):
                return pod
        return None

    try:
        return cluster.wait(running, f"a Running pod of {app}", timeout)
    except TimeoutError:
        raise AssertionError(f"no Running pod of {app}: {pod_story(cluster, app)}") from None


def pod_story(cluster: Cluster, app: str) -> str:
    """What the cluster says about an app's pods, for a failure message."""
    pods = cluster.kubectl("get", "pods,pvc", "-o", "wide", check=False).stdout
    events = cluster.kubectl("get", "events", "--sort-by=.lastTimestamp", check=False).stdout
    agents = {name: agent.errors for name, agent in cluster.agents.items() if agent.errors}
    return f"\n{pods}\n{events[-3000:]}\nnode agents: {agents}"


def events_about(cluster: Cluster, name: str) -> list[str]:
    listed = cluster.admin.get("/api/v1/namespaces/default/events")["items"]
    return [
        f"{e.get('reason')}: {e.get('message')}"
        for e in listed
        if e["involvedObject"].get("name") == name
    ]


def delete(cluster: Cluster, *objects: dict[str, Any]) -> None:
    """Delete the objects and wait until they and the volumes of deleted claims are gone."""
    volumes = []
    for o in objects:
        if o["kind"] == "PersistentVolumeClaim":
            found = cluster.admin.find(
                f"/api/v1/namespaces/default/persistentvolumeclaims/{o['metadata']['name']}"
            )
            if found and found["spec"].get("volumeName"):
                volumes.append(found["spec"]["volumeName"])
    cluster.kubectl(
        "delete", "--ignore-not-found", "--wait=true", "--timeout=120s", "-f", "-",
        stdin=yaml.safe_dump_all(list(objects)), timeout=150,
    )  # fmt: skip
    for name in volumes:
        cluster.wait(lambda n=name: volume_released(cluster, n), f"PV {name} deleted")


def volume_released(cluster: Cluster, name: str) -> bool:
    """The PV is gone, or kept by its Retain policy."""
    found = cluster.admin.find(f"/api/v1/persistentvolumes/{name}")
    return found is None or found["spec"]["persistentVolumeReclaimPolicy"] == "Retain"


def emulator_disks(cluster: Cluster) -> dict[str, dict[str, Any]]:
    return {d["id"]: d for d in cluster.info.admin("GET", "disks")["disks"]}


def attached_to(cluster: Cluster, disk_id: str) -> set[str]:
    rows = cluster.info.admin("GET", "disks")["attachments"]
    return {r["instance_id"] for r in rows if r["disk_id"] == disk_id}


def calls(cluster: Cluster, action: str) -> int:
    return cluster.info.calls().get(action, 0)


def cordoned(cluster: Cluster, nodes: list[str]) -> Any:
    @contextmanager
    def manage() -> Iterator[None]:
        for node in nodes:
            cluster.kubectl("cordon", node)
        try:
            yield
        finally:
            for node in nodes:
                if cluster.admin.find(f"/api/v1/nodes/{node}") is not None:
                    cluster.kubectl("uncordon", node)

    return manage()


def nodes_in(cluster: Cluster, zone: str) -> list[str]:
    return [i.id for i in cluster.info.instances_in(zone)]


def operator_disk(cluster: Cluster, zone: str, name: str) -> str:
    """A disk made outside Kubernetes, as the static way has an operator make it (tagged as
    the install guide asks, so the RAM policies let the driver attach it)."""
    info = cluster.info
    cloud = EcsCloud(
        info.region,
        StaticProvider(Credentials(info.access_key_id, info.access_key_secret, source="test")),
        endpoint=info.ecs_endpoint,
    )
    disk_id = cloud.create_disk(
        DiskRequest(
            zone=zone,
            category="cloud_ssd",
            size_gib=20,
            client_token=name,
            name=name,
            tags={"csi.alibabacloud.com/volume-name": name},
        )
    )
    deadline = time.monotonic() + 60
    while not any(d.status == AVAILABLE for d in cloud.describe_disks([disk_id])):
        assert time.monotonic() < deadline, f"disk {disk_id} never became Available"
        time.sleep(0.1)
    return disk_id


def wait_for(condition: Callable[[], Any], what: str, cluster: Cluster, timeout: float = 90) -> Any:
    return cluster.wait(condition, what, timeout)


def sidecar_refusals(cluster: Cluster) -> list[str]:
    """Lines where the apiserver refused a sidecar (RBAC): a grant missing from deploy/."""
    found = []
    # csi-snapshotter probes the group snapshot CRDs at start and turns the feature off when
    # it may not list them; csi-disk has no group snapshots, so deploy/ grants nothing there.
    probe = "VolumeGroupSnapshot CRDs were not found; disabling the VolumeGroupSnapshot feature"
    for pod in [*cluster.controllers.values(), cluster.snapshot_controller]:
        if pod is None:
            continue
        for log in pod.logs.glob("*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if probe in line and log.stem == "csi-snapshotter":
                    continue
                if re.search(
                    r"is forbidden|cannot (get|list|watch|create|update|patch|delete)", line
                ):
                    found.append(f"{pod.name}/{log.stem}: {line[:400]}")
    return found
