"""The seed story's steps on a real cluster, shared by the attach-mode test modules.

Each step drives the cluster with kubectl and the seed's own manifests (deploy/examples), and
reads every outcome from somewhere the driver does not write: the API objects the real
controllers made, the emulator's records and call counts, and what the pod sees in /data.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from csi_disk_demo.kube import objects
from csi_disk_demo.kube.cluster import Cluster
from csi_disk_demo.kube.objects import (  # noqa: F401 - the scenarios' vocabulary, re-exported
    DISK_TYPE,
    OUT_OF_SERVICE,
    REGION,
    SELECTED_NODE,
    ZONE,
    affinity,
    affinity_zone,
    apply,
    attached_to,
    attachments,
    bound_volume,
    by_kind,
    calls,
    capacity_on,
    claim,
    claim_of,
    cordoned,
    delete,
    emulator_disks,
    events_about,
    example,
    node_labels,
    node_ready,
    operator_disk,
    provisioning_failures,
    refused,
    seed_deployment,
    storage_class,
    volume,
)
from csi_disk_demo.stack import leftovers
from tests.conftest import require_root

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


def pod_story(cluster: Cluster, app: str) -> str:
    """What the cluster says about an app's pods, for a failure message."""
    pods = cluster.kubectl("get", "pods,pvc", "-o", "wide", check=False).stdout
    events = cluster.kubectl("get", "events", "--sort-by=.lastTimestamp", check=False).stdout
    agents = {name: agent.errors for name, agent in cluster.agents.items() if agent.errors}
    return f"\n{pods}\n{events[-3000:]}\nnode agents: {agents}"


def nodes_in(cluster: Cluster, zone: str) -> list[str]:
    return [i.id for i in cluster.info.instances_in(zone)]


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


def running_pod(
    cluster: Cluster, app: str, timeout: float = 90, other_than: str = ""
) -> dict[str, Any]:
    """``objects.running_pod``, failing with what the cluster says about the app's pods."""
    try:
        return objects.running_pod(cluster, app, timeout, other_than)
    except TimeoutError:
        raise AssertionError(f"no Running pod of {app}: {pod_story(cluster, app)}") from None
