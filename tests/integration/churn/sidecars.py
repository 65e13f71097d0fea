"""The sidecars and the kubelet of the churn test, a process of their own:

    python -m tests.integration.churn.sidecars '<plan as JSON>'

They take volumes through their life over the plugins' sockets, repeating each call while
it answers a code the sidecars retry, as external-provisioner, external-attacher and the
kubelet do; every outcome is read from outside the driver (the emulator's records, the
mount table, the bytes on the filesystem). The result is one JSON line on stdout: what
failed and how often each code was retried.

A process apart from the test that kills and restarts the plugins, as in a cluster: the
test forks while no call of its own is in flight (a fork beside a thread inside gRPC can
crash the child before exec, grpc/grpc#43055), and these channels outlive the restarts.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc

from csi_disk import DRIVER_NAME
from csi_disk.categories import GIB
from csi_disk.csi_pb import csi_pb2, csi_pb2_grpc
from csi_disk.host.mounts import read_mounts
from csi_disk.tokens import VOLUME_NAME_TAG
from csi_disk.topology import ZONE_KEY

PAYLOAD = 256 * 1024  # bytes written on the first node, read back on the second

RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
}

# A restarted plugin is reached within a fraction of a second, not after gRPC's default
# reconnect backoff of up to two minutes.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]

Cap = csi_pb2.VolumeCapability
T = TypeVar("T")


@dataclass
class Plan:
    """What the test asks for; the JSON on the command line."""

    mode: str  # attach mode: "node" or "controller"
    seed: int
    volumes: int
    workers: int
    zone: str
    nodes: list[str]  # instance ids, each the node id its plugin reports
    endpoints: dict[str, str]  # "controller" and "node-<instance id>" -> unix:// endpoint
    kubelets: dict[str, str]  # instance id -> its kubelet directory
    admin: str  # the emulator's admin endpoint, the same across its restarts
    call_timeout: float  # each CSI call's deadline
    step_budget: float  # how long one step may go on failing retryably


@dataclass
class Sidecars:
    plan: Plan
    retries: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    channels: dict[str, grpc.Channel] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, endpoint in self.plan.endpoints.items():
            self.channels[name] = grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)

    def controller(self) -> csi_pb2_grpc.ControllerStub:
        return csi_pb2_grpc.ControllerStub(self.channels["controller"])

    def node(self, instance_id: str) -> csi_pb2_grpc.NodeStub:
        return csi_pb2_grpc.NodeStub(self.channels[f"node-{instance_id}"])

    def call(self, what: str, rpc: Callable[[], T]) -> T:
        """``rpc`` until it answers, while it fails with a code the sidecars retry."""
        deadline = time.monotonic() + self.plan.step_budget
        delay = 0.1
        while True:
            try:
                return rpc()
            except grpc.RpcError as err:
                code = err.code()
                if code not in RETRYABLE or time.monotonic() > deadline:
                    raise AssertionError(f"{what}: {code.name}: {err.details()}") from None
                with self.lock:
                    self.retries[code.name] += 1
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def admin(self, path: str) -> Any:
        """GET on the emulator's admin API, waiting out the emulator's own downtime."""
        if not self.plan.admin.startswith("http://"):
            raise ValueError("the admin endpoint must be http://")
        deadline = time.monotonic() + self.plan.step_budget
        while True:
            try:
                url = f"{self.plan.admin}/{path}"
                with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - http only, checked above
                    return json.loads(answer.read())
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def disks_named(self, name: str) -> list[str]:
        found = []
        for row in self.admin("disks")["disks"]:
            tags = {t["TagKey"]: t["TagValue"] for t in json.loads(row["tags"] or "[]")}
            if tags.get(VOLUME_NAME_TAG) == name:
                found.append(row["id"])
        return found

    def attached_to(self, disk_id: str) -> list[str]:
        rows = self.admin("disks")["attachments"]
        return [r["instance_id"] for r in rows if r["disk_id"] == disk_id]


def mounted(path: Path) -> bool:
    return any(m.mount_point == str(path) for m in read_mounts())


def capability() -> csi_pb2.VolumeCapability:
    return Cap(
        mount=Cap.MountVolume(fs_type="ext4"),
        access_mode=Cap.AccessMode(mode=Cap.AccessMode.SINGLE_NODE_WRITER),
    )


def lifecycle(sidecars: Sidecars, index: int) -> None:
    """One volume from CreateVolume to DeleteVolume, visiting both nodes."""
    plan = sidecars.plan
    rng = random.Random(f"{plan.seed}:{plan.mode}:volume:{index}")
    name = f"pvc-churn-{plan.mode}-{index}"
    payload = rng.randbytes(PAYLOAD)
    create = csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=20 * GIB),
        volume_capabilities=[capability()],
        parameters={"type": "cloud_essd"},
        accessibility_requirements=csi_pb2.TopologyRequirement(
            requisite=[csi_pb2.Topology(segments={ZONE_KEY: plan.zone})]
        ),
    )
    volume = sidecars.call(
        f"{name} CreateVolume",
        lambda: sidecars.controller().CreateVolume(create, timeout=plan.call_timeout),
    ).volume
    disk_id = volume.volume_id
    assert sidecars.disks_named(name) == [disk_id], f"{name}: not exactly one disk"
    for turn, node in enumerate(rng.sample(plan.nodes, len(plan.nodes))):
        visit(sidecars, name, disk_id, node, payload, write=turn == 0)
    assert sidecars.disks_named(name) == [disk_id], f"{name}: not exactly one disk"
    delete = csi_pb2.DeleteVolumeRequest(volume_id=disk_id)
    sidecars.call(
        f"{name} DeleteVolume",
        lambda: sidecars.controller().DeleteVolume(delete, timeout=plan.call_timeout),
    )
    assert sidecars.disks_named(name) == [], f"{name}: a disk outlived DeleteVolume"


def visit(
    sidecars: Sidecars, name: str, disk_id: str, node: str, payload: bytes, write: bool
) -> None:
    """A pod using the volume on ``node``: up, write or read, down."""
    plan = sidecars.plan
    timeout = plan.call_timeout
    what = f"{name} ({disk_id}) on {node}"
    cap = capability()
    context: dict[str, str] = {}
    if plan.mode == "controller":
        attach = csi_pb2.ControllerPublishVolumeRequest(
            volume_id=disk_id, node_id=node, volume_capability=cap
        )
        reply = sidecars.call(
            f"{what}: ControllerPublishVolume",
            lambda: sidecars.controller().ControllerPublishVolume(attach, timeout=timeout),
        )
        context = dict(reply.publish_context)
    # The kubelet's own layout; it makes the parents, the plugin the last directory.
    kubelet = Path(plan.kubelets[node])
    digest = hashlib.sha256(disk_id.encode()).hexdigest()
    staging = kubelet / "plugins" / "kubernetes.io" / "csi" / DRIVER_NAME / digest / "globalmount"
    target = kubelet / "pods" / f"pod-{name}" / "volumes" / "kubernetes.io~csi" / name / "mount"
    staging.parent.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = csi_pb2.NodeStageVolumeRequest(
        volume_id=disk_id,
        publish_context=context,
        staging_target_path=str(staging),
        volume_capability=cap,
    )
    sidecars.call(
        f"{what}: NodeStageVolume",
        lambda: sidecars.node(node).NodeStageVolume(stage, timeout=timeout),
    )
    publish = csi_pb2.NodePublishVolumeRequest(
        volume_id=disk_id,
        publish_context=context,
        staging_target_path=str(staging),
        target_path=str(target),
        volume_capability=cap,
    )
    sidecars.call(
        f"{what}: NodePublishVolume",
        lambda: sidecars.node(node).NodePublishVolume(publish, timeout=timeout),
    )
    data = target / "data"
    if write:
        with open(data, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
    else:
        found = data.read_bytes() if data.exists() else b""
        assert found == payload, f"{what}: {len(found)} bytes read back, not what was written"
    unpublish = csi_pb2.NodeUnpublishVolumeRequest(volume_id=disk_id, target_path=str(target))
    sidecars.call(
        f"{what}: NodeUnpublishVolume",
        lambda: sidecars.node(node).NodeUnpublishVolume(unpublish, timeout=timeout),
    )
    assert not mounted(target), f"{what}: {target} still mounted after NodeUnpublishVolume"
    unstage = csi_pb2.NodeUnstageVolumeRequest(volume_id=disk_id, staging_target_path=str(staging))
    sidecars.call(
        f"{what}: NodeUnstageVolume",
        lambda: sidecars.node(node).NodeUnstageVolume(unstage, timeout=timeout),
    )
    assert not mounted(staging), f"{what}: {staging} still mounted after NodeUnstageVolume"
    if plan.mode == "controller":
        detach = csi_pb2.ControllerUnpublishVolumeRequest(volume_id=disk_id, node_id=node)
        sidecars.call(
            f"{what}: ControllerUnpublishVolume",
            lambda: sidecars.controller().ControllerUnpublishVolume(detach, timeout=timeout),
        )
    assert node not in sidecars.attached_to(disk_id), f"{what}: still attached after detaching"


def run(plan: Plan) -> dict[str, Any]:
    """Every volume's life, ``plan.workers`` at a time; what failed, and the retries."""
    sidecars = Sidecars(plan)
    failures = []
    try:
        with ThreadPoolExecutor(plan.workers) as pool:
            futures = [pool.submit(lifecycle, sidecars, i) for i in range(plan.volumes)]
            for index, future in enumerate(futures):
                try:
                    future.result()
                except AssertionError as err:
                    failures.append(f"volume {index}: {err}")
                except Exception as err:  # reported with the rest, not a traceback
                    failures.append(f"volume {index}: {type(err).__name__}: {err}")
    finally:
        for channel in sidecars.channels.values():
            channel.close()
    return {"failures": failures, "retries": dict(sidecars.retries)}


def main(argv: list[str]) -> int:
    result = run(Plan(**json.loads(argv[1])))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
