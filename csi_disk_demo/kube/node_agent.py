"""The node agent: what kubelet (with node-driver-registrar) and the container runtime do for
the volumes of one node, and nothing more. It is the one stand-in of the real-cluster story.

It authenticates as ``system:node:<name>`` (group system:nodes), so the Node authorizer and
NodeRestriction judge it as they judge a kubelet. It

- registers the Node as kubelet does (``controller-managed-attach-detach``, Ready, capacity,
  a Lease renewed every few seconds) and the driver as node-driver-registrar makes kubelet do:
  the CSINode entry with NodeGetInfo's node id, topology keys and attach limit, the topology
  segments as node labels, the ``csi.volume.kubernetes.io/nodeid`` annotation;
- for each pod the scheduler bound to the node: reports the volumes in ``status.volumesInUse``,
  waits (controller attach mode) for the attach-detach controller to list the volume in
  ``status.volumesAttached`` and for its VolumeAttachment to be attached, calls NodeStageVolume
  and NodePublishVolume with kubelet's own paths, starts the containers' commands through the
  ``sandbox`` (the volume at its mountPath), and reports the pod Running;
- expands a volume's filesystem when the resizer leaves it NodeResizePending, as kubelet does;
- for a pod being deleted: stops its processes, unpublishes, unstages when no other pod of the
  node uses the volume, drops it from ``volumesInUse``, and deletes the pod for good.

It schedules, binds, provisions and attaches nothing: those are the real components' work.
Containers are not images: a container's command runs on the host's userland in a private
mount namespace (see ``sandbox``); a container without a command (the seed's nginx) is
reported running with no process. ``exec`` stands in for ``kubectl exec``, which needs the
kubelet's streaming server.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from csi_disk.csi_pb import csi_pb2, csi_pb2_grpc
from csi_disk_demo.kube.api import Api, ApiError
from csi_disk_demo.kube.binaries import REPO_ROOT
from csi_disk_emulator.process import dying_with_parent

log = logging.getLogger(__name__)

LEASE_RENEW = 2.0  # seconds; kubelet's default is 10 s against a 40 s node-monitor grace
POLL = 0.5
LEASE_DURATION = 40
ATTACH_ANNOTATION = "volumes.kubernetes.io/controller-managed-attach-detach"
NODE_ID_ANNOTATION = "csi.volume.kubernetes.io/nodeid"
RWO = csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
ACCESS_MODES = {
    "ReadWriteOnce": RWO,
    "ReadWriteOncePod": csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_SINGLE_WRITER,
    "ReadOnlyMany": csi_pb2.VolumeCapability.AccessMode.MULTI_NODE_READER_ONLY,
    "ReadWriteMany": csi_pb2.VolumeCapability.AccessMode.MULTI_NODE_MULTI_WRITER,
}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def unique_volume_name(driver: str, handle: str) -> str:
    """The name kubelet and the attach-detach controller give a CSI volume."""
    return f"kubernetes.io/csi/{driver}^{handle}"


def attachment_name(driver: str, handle: str, node: str) -> str:
    """The VolumeAttachment's name, as the attach-detach controller's csi attacher makes it."""
    return "csi-" + hashlib.sha256(f"{handle}{driver}{node}".encode()).hexdigest()


def staging_path(kubelet_dir: Path, driver: str, handle: str) -> Path:
    """kubelet's csi_attacher: plugins/kubernetes.io/csi/<driver>/<sha256(handle)>/globalmount."""
    digest = hashlib.sha256(handle.encode()).hexdigest()
    return kubelet_dir / "plugins" / "kubernetes.io" / "csi" / driver / digest / "globalmount"


def publish_path(kubelet_dir: Path, pod_uid: str, pv_name: str) -> Path:
    """kubelet's csi_mounter: pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount."""
    return kubelet_dir / "pods" / pod_uid / "volumes" / "kubernetes.io~csi" / pv_name / "mount"


class NotYet(Exception):
    """A pod's volume is not ready for this step yet; the agent tries again next round."""


@dataclass
class Volume:
    name: str  # the pod's volume name
    claim: str
    pv: str
    handle: str
    unique: str
    staging: Path
    target: Path
    capability: Any
    publish_context: dict[str, str]
    volume_context: dict[str, str]


@dataclass
class PodRun:
    uid: str
    namespace: str
    name: str
    volumes: list[Volume] = field(default_factory=list)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)
    mounts: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


class NodeAgent:
    def __init__(
        self,
        name: str,
        api: Api,
        endpoint: str,
        kubelet_dir: Path,
        driver: str,
        *,
        log_dir: Path,
    ) -> None:
        self.name = name
        self.api = api
        self.channel = grpc.insecure_channel(endpoint)
        self.identity = csi_pb2_grpc.IdentityStub(self.channel)
        self.node = csi_pb2_grpc.NodeStub(self.channel)
        self.kubelet_dir = kubelet_dir
        self.driver = driver
        self.log_dir = log_dir
        self.pods: dict[str, PodRun] = {}
        self.in_use: set[str] = set()
        self.errors: dict[str, str] = {}  # pod uid -> the last reason it is not running
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._last_lease = 0.0
        self.capabilities: set[int] = set()

    # ------------------------------------------------------------------ registration

    def register(self) -> None:
        info = self.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=30)
        caps = self.node.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest(), timeout=30)
        self.capabilities = {c.rpc.type for c in caps.capabilities}
        segments = dict(info.accessible_topology.segments)
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **segments,
        }
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {
                    ATTACH_ANNOTATION: "true",
                    NODE_ID_ANNOTATION: json.dumps({self.driver: info.node_id}),
                },
            },
            "spec": {},
        }
        if self.api.find(f"/api/v1/nodes/{self.name}") is None:
            self.api.create("/api/v1/nodes", node)
        else:
            self.api.patch(f"/api/v1/nodes/{self.name}", {"metadata": node["metadata"]})
        # A kubelet coming back reports what it has mounted now: nothing yet.
        self.patch_status({**self.ready_status(), "volumesInUse": sorted(self.in_use)})
        created = self.api.get(f"/api/v1/nodes/{self.name}")
        csinode = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "CSINode",
            "metadata": {
                "name": self.name,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": self.name,
                     "uid": created["metadata"]["uid"]}
                ],
            },
            "spec": {
                "drivers": [
                    {
                        "name": self.driver,
                        "nodeID": info.node_id,
                        "topologyKeys": sorted(segments),
                        **(
                            {"allocatable": {"count": info.max_volumes_per_node}}
                            if info.max_volumes_per_node
                            else {}
                        ),
                    }
                ]
            },
        }  # fmt: skip
        if self.api.find(f"/apis/storage.k8s.io/v1/csinodes/{self.name}") is None:
            self.api.create("/apis/storage.k8s.io/v1/csinodes", csinode)
        else:
            self.api.patch(f"/apis/storage.k8s.io/v1/csinodes/{self.name}", csinode)
        self.renew_lease()

    def ready_status(self) -> dict[str, Any]:
        stamp = now()
        conditions = [
            {"type": kind, "status": "False", "reason": f"KubeletHasSufficient{kind[:-8]}",
             "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
            for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")
        ]  # fmt: skip
        conditions.append(
            {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "node agent is posting ready status",
             "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
        )  # fmt: skip
        resources = {"cpu": "2", "memory": "4Gi", "pods": "110", "ephemeral-storage": "20Gi"}
        return {
            "conditions": conditions,
            "capacity": resources,
            "allocatable": resources,
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.name},
            ],
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": os.uname().release,
                "osImage": "csi-disk demo node", "containerRuntimeVersion": "sandbox://0",
                "kubeletVersion": "v1.37.2", "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }  # fmt: skip

    def patch_status(self, status: dict[str, Any]) -> None:
        self.api.patch(
            f"/api/v1/nodes/{self.name}/status",
            {"status": status},
            content_type="application/strategic-merge-patch+json",
        )

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_DURATION,
            "renewTime": micro_now(),
        }
        try:
            self.api.patch(path, {"spec": spec})
        except ApiError as err:
            if err.status != 404:
                raise
            node = self.api.get(f"/api/v1/nodes/{self.name}")
            self.api.create(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": self.name,
                        "namespace": "kube-node-lease",
                        "ownerReferences": [
                            {"apiVersion": "v1", "kind": "Node", "name": self.name,
                             "uid": node["metadata"]["uid"]}
                        ],
                    },
                    "spec": spec,
                },
            )  # fmt: skip
        self._last_lease = time.monotonic()

    # ------------------------------------------------------------------ the loop

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"agent-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the agent, as a kubelet dies with its instance: nothing is unmounted here."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for run in self.pods.values():
            for process in run.processes.values():
                if process.poll() is None:
                    process.kill()
                    process.wait()
        self.channel.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if time.monotonic() - self._last_lease >= LEASE_RENEW:
                    self.renew_lease()
                self.sync()
            except Exception as err:  # keep going, as kubelet does; the cause goes to the log
                log.warning("node agent %s: %s", self.name, err)
                self.errors["sync"] = f"{type(err).__name__}: {err}"
            self._stop.wait(POLL)

    def sync(self) -> None:
        listed = self.api.get("/api/v1/pods", fieldSelector=f"spec.nodeName={self.name}")
        seen = set()
        with self._lock:
            for pod in listed["items"]:
                uid = pod["metadata"]["uid"]
                seen.add(uid)
                try:
                    if pod["metadata"].get("deletionTimestamp"):
                        self.tear_down(pod)
                    elif pod["status"].get("phase") not in ("Succeeded", "Failed"):
                        self.set_up(pod)
                    self.errors.pop(uid, None)
                except NotYet as wait:
                    self.errors[uid] = str(wait)
                except grpc.RpcError as err:
                    self.errors[uid] = f"{err.code().name}: {err.details()}"
                except ApiError as err:
                    self.errors[uid] = str(err)
            # Pods deleted by force (the pod GC after an out-of-service taint): clean up here.
            for uid in list(self.pods):
                if uid not in seen:
                    self.tear_down_run(self.pods[uid])

    # ------------------------------------------------------------------ pods

    def pod_volumes(self, pod: dict[str, Any]) -> list[Volume]:
        namespace = pod["metadata"]["namespace"]
        volumes = []
        for volume in pod["spec"].get("volumes", []):
            source = volume.get("persistentVolumeClaim")
            if not source:
                continue
            claim = self.api.get(
                f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{source['claimName']}"
            )
            pv_name = claim["spec"].get("volumeName")
            if not pv_name or claim["status"].get("phase") != "Bound":
                raise NotYet(f"claim {source['claimName']} is not bound")
            pv = self.api.get(f"/api/v1/persistentvolumes/{pv_name}")
            csi = pv["spec"].get("csi")
            if not csi or csi.get("driver") != self.driver:
                continue
            handle = csi["volumeHandle"]
            mode = ACCESS_MODES[pv["spec"]["accessModes"][0]]
            if pv["spec"].get("volumeMode") == "Block":
                raise NotYet("block volumes are not played by the node agent")
            capability = csi_pb2.VolumeCapability(
                mount=csi_pb2.VolumeCapability.MountVolume(fs_type=csi.get("fsType", "ext4")),
                access_mode=csi_pb2.VolumeCapability.AccessMode(mode=mode),
            )
            volumes.append(
                Volume(
                    name=volume["name"],
                    claim=source["claimName"],
                    pv=pv_name,
                    handle=handle,
                    unique=unique_volume_name(self.driver, handle),
                    staging=staging_path(self.kubelet_dir, self.driver, handle),
                    target=publish_path(self.kubelet_dir, pod["metadata"]["uid"], pv_name),
                    capability=capability,
                    publish_context={},
                    volume_context=dict(csi.get("volumeAttributes") or {}),
                )
            )
        return volumes

    def attach_required(self) -> bool:
        driver = self.api.get(f"/apis/storage.k8s.io/v1/csidrivers/{self.driver}")
        return bool(driver["spec"].get("attachRequired", True))

    def report_in_use(self) -> None:
        self.patch_status({"volumesInUse": sorted(self.in_use)})

    def wait_attached(self, volume: Volume) -> None:
        """Controller attach mode: the volume is in the node's volumesAttached (the
        attach-detach controller's word) and its VolumeAttachment says attached."""
        node = self.api.get(f"/api/v1/nodes/{self.name}")
        attached = {v["name"] for v in node["status"].get("volumesAttached") or []}
        if volume.unique not in attached:
            raise NotYet(f"volume {volume.pv} is not attached to {self.name} yet")
        name = attachment_name(self.driver, volume.handle, self.name)
        attachment = self.api.find(f"/apis/storage.k8s.io/v1/volumeattachments/{name}")
        if attachment is None or not attachment.get("status", {}).get("attached"):
            raise NotYet(f"VolumeAttachment {name} is not attached yet")
        volume.publish_context = dict(attachment["status"].get("attachmentMetadata") or {})

    def set_up(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        run = self.pods.get(uid)
        if run is None:
            volumes = self.pod_volumes(pod)
            new = {v.unique for v in volumes} - self.in_use
            if new:
                self.in_use |= new
                self.report_in_use()
            if volumes and self.attach_required():
                for volume in volumes:
                    self.wait_attached(volume)
            run = PodRun(uid, pod["metadata"]["namespace"], pod["metadata"]["name"])
            for volume in volumes:
                self.mount(volume)
                run.volumes.append(volume)
            self.pods[uid] = run
            self.start_containers(pod, run)
        self.expand_if_asked(run)
        self.report_pod(pod, run)

    def mount(self, volume: Volume) -> None:
        if csi_pb2.NodeServiceCapability.RPC.STAGE_UNSTAGE_VOLUME in self.capabilities:
            volume.staging.mkdir(parents=True, exist_ok=True)
            self.node.NodeStageVolume(
                csi_pb2.NodeStageVolumeRequest(
                    volume_id=volume.handle,
                    publish_context=volume.publish_context,
                    staging_target_path=str(volume.staging),
                    volume_capability=volume.capability,
                    volume_context=volume.volume_context,
                ),
                timeout=300,
            )
        volume.target.parent.mkdir(parents=True, exist_ok=True)
        self.node.NodePublishVolume(
            csi_pb2.NodePublishVolumeRequest(
                volume_id=volume.handle,
                publish_context=volume.publish_context,
                staging_target_path=str(volume.staging),
                target_path=str(volume.target),
                volume_capability=volume.capability,
                volume_context=volume.volume_context,
            ),
            timeout=300,
        )

    def container_mounts(self, pod: dict[str, Any], run: PodRun) -> None:
        by_name = {v.name: v for v in run.volumes}
        for container in pod["spec"]["containers"]:
            binds = []
            for mount in container.get("volumeMounts", []):
                volume = by_name.get(mount["name"])
                if volume is not None:
                    binds.append((str(volume.target), mount["mountPath"]))
            run.mounts[container["name"]] = binds

    def sandbox_command(self, run: PodRun, container: str, argv: list[str]) -> list[str]:
        root = self.kubelet_dir / "pods" / run.uid / "rootfs" / container
        command = [
            "unshare", "--mount", "--propagation", "private", "--",
            sys.executable, "-m", "csi_disk_demo.kube.sandbox", "--root", str(root),
        ]  # fmt: skip
        for source, target in run.mounts.get(container, []):
            command += ["--bind", f"{source}:{target}"]
        return [*command, "--", *argv]

    def start_containers(self, pod: dict[str, Any], run: PodRun) -> None:
        self.container_mounts(pod, run)
        for container in pod["spec"]["containers"]:
            argv = [*container.get("command", []), *container.get("args", [])]
            if not argv:
                continue  # an image's entrypoint: no image here, so no process
            out = self.log_dir / f"{run.namespace}_{run.name}_{container['name']}.log"
            with open(out, "ab") as log_file:
                run.processes[container["name"]] = subprocess.Popen(
                    dying_with_parent(self.sandbox_command(run, container["name"], argv)),
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=sandbox_env(),
                )

    def exec(
        self, namespace: str, pod_name: str, argv: list[str], container: str = ""
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` beside a running pod's containers, its volumes at their mountPaths:
        what ``kubectl exec`` does through kubelet's streaming server."""
        with self._lock:
            run = next(
                (r for r in self.pods.values() if r.namespace == namespace and r.name == pod_name),
                None,
            )
            if run is None:
                raise LookupError(f"pod {namespace}/{pod_name} is not running on {self.name}")
            name = container or next(iter(run.mounts), "")
            command = self.sandbox_command(run, name, argv)
        return subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=60, env=sandbox_env()
        )

    def container_statuses(self, pod: dict[str, Any], run: PodRun) -> list[dict[str, Any]]:
        statuses = []
        for container in pod["spec"]["containers"]:
            process = run.processes.get(container["name"])
            state: dict[str, Any] = {"running": {"startedAt": run.reported.get("started", now())}}
            ready = True
            if process is not None and process.poll() is not None:
                ready = False
                state = {
                    "terminated": {
                        "exitCode": process.returncode,
                        "reason": "Completed" if process.returncode == 0 else "Error",
                        "finishedAt": now(),
                    }
                }
            statuses.append(
                {"name": container["name"], "image": container.get("image", ""), "imageID": "",
                 "ready": ready, "restartCount": 0, "started": ready, "state": state}
            )  # fmt: skip
        return statuses

    def report_pod(self, pod: dict[str, Any], run: PodRun) -> None:
        run.reported.setdefault("started", now())
        statuses = self.container_statuses(pod, run)
        ready = all(s["ready"] for s in statuses)
        key = [(s["name"], *s["state"], s["ready"]) for s in statuses]
        if run.reported.get("key") == key:
            return
        stamp = now()
        condition = "True" if ready else "False"
        status = {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": run.reported["started"],
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True",
                 "lastTransitionTime": stamp},
                {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
                {"type": "ContainersReady", "status": condition, "lastTransitionTime": stamp},
                {"type": "Ready", "status": condition, "lastTransitionTime": stamp},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
            ],
            "containerStatuses": statuses,
        }  # fmt: skip
        self.api.patch(
            f"/api/v1/namespaces/{run.namespace}/pods/{run.name}/status", {"status": status}
        )
        run.reported["key"] = key

    # ------------------------------------------------------------------ resize

    def expand_if_asked(self, run: PodRun) -> None:
        """The resizer grew the disk and left the claim NodeResizePending: grow the
        filesystem, then record the new capacity on the claim, as kubelet does."""
        for volume in run.volumes:
            path = f"/api/v1/namespaces/{run.namespace}/persistentvolumeclaims/{volume.claim}"
            claim = self.api.get(path)
            statuses = claim["status"].get("allocatedResourceStatuses") or {}
            if statuses.get("storage") != "NodeResizePending":
                continue
            pv = self.api.get(f"/api/v1/persistentvolumes/{volume.pv}")
            size = pv["spec"]["capacity"]["storage"]
            self.node.NodeExpandVolume(
                csi_pb2.NodeExpandVolumeRequest(
                    volume_id=volume.handle,
                    volume_path=str(volume.target),
                    staging_target_path=str(volume.staging),
                    capacity_range=csi_pb2.CapacityRange(required_bytes=quantity_bytes(size)),
                    volume_capability=volume.capability,
                ),
                timeout=300,
            )
            conditions = [
                c for c in claim["status"].get("conditions") or []
                if c["type"] not in ("FileSystemResizePending", "Resizing")
            ]  # fmt: skip
            self.api.patch(
                f"{path}/status",
                {"status": {"capacity": {"storage": size},
                            "allocatedResourceStatuses": None, "conditions": conditions}},
            )  # fmt: skip

    # ------------------------------------------------------------------ teardown

    def tear_down(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        run = self.pods.get(uid)
        if run is not None:
            self.tear_down_run(run)
        # The pod is gone from the node: finish its deletion, as kubelet's status manager does.
        try:
            self.api.delete(
                f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{pod['metadata']['name']}",
                {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}},
            )
        except ApiError as err:
            if err.status not in (404, 409):
                raise

    def tear_down_run(self, run: PodRun) -> None:
        for process in run.processes.values():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        run.processes.clear()
        while run.volumes:
            volume = run.volumes[-1]
            self.node.NodeUnpublishVolume(
                csi_pb2.NodeUnpublishVolumeRequest(
                    volume_id=volume.handle, target_path=str(volume.target)
                ),
                timeout=300,
            )
            others = any(
                v.handle == volume.handle
                for r in self.pods.values()
                if r is not run
                for v in r.volumes
            )
            if not others:
                if csi_pb2.NodeServiceCapability.RPC.STAGE_UNSTAGE_VOLUME in self.capabilities:
                    self.node.NodeUnstageVolume(
                        csi_pb2.NodeUnstageVolumeRequest(
                            volume_id=volume.handle, staging_target_path=str(volume.staging)
                        ),
                        timeout=300,
                    )
                self.in_use.discard(volume.unique)
                self.report_in_use()
            run.volumes.pop()
        self.pods.pop(run.uid, None)


def sandbox_env() -> dict[str, str]:
    """The sandbox helper runs from this checkout; the container gets a plain PATH."""
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": str(REPO_ROOT),
        "HOME": "/",
    }


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}


def quantity_bytes(text: str) -> int:
    """A Kubernetes quantity of bytes ("20Gi", "21474836480") as an integer."""
    for suffix, factor in _UNITS.items():
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * factor
    return int(text)
