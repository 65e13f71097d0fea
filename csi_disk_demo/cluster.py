"""A small stand-in for the Kubernetes side of CSI, for the demo and the end-to-end tests.

It calls the driver the way the real components do, over the driver's own sockets:
external-provisioner (strict topology, WaitForFirstConsumer, ``--extra-create-metadata``),
the scheduler (volume node affinity as a filter), external-attacher (controller attach
mode) and the kubelet (stage, publish, unpublish, unstage, with kubelet's own paths).
Node topology comes from each plugin's live NodeGetInfo, never from the emulator.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from csi_disk import DRIVER_NAME
from csi_disk.csi_pb import csi_pb2, csi_pb2_grpc
from csi_disk.topology import K8S_ZONE_KEY, LEGACY_ZONE_KEY, ZONE_KEYS

log = logging.getLogger(__name__)

GIB = 1024**3
SELECTED_NODE = "volume.kubernetes.io/selected-node"
LEGACY_REGION_KEY = "failure-domain.beta.kubernetes.io/region"
CALL_TIMEOUT = 300.0  # the provisioner's --timeout in our manifests

AccessMode = csi_pb2.VolumeCapability.AccessMode


class SchedulingError(Exception):
    """No node satisfies the pod's volumes: the pod stays Pending with this reason."""


@dataclass
class Plugin:
    """One ``csi-disk serve`` endpoint as the cluster reaches it."""

    endpoint: str  # unix:///path

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(self.endpoint)
        self.identity = csi_pb2_grpc.IdentityStub(self.channel)
        self.controller = csi_pb2_grpc.ControllerStub(self.channel)
        self.node = csi_pb2_grpc.NodeStub(self.channel)

    def close(self) -> None:
        self.channel.close()


@dataclass
class Node:
    name: str  # the node id NodeGetInfo reported (the ECS instance id)
    plugin: Plugin
    kubelet_dir: Path
    labels: dict[str, str] = field(default_factory=dict)
    topology: dict[str, str] = field(default_factory=dict)
    max_volumes: int = 0
    ready: bool = True

    @property
    def zone(self) -> str:
        return self.labels.get(K8S_ZONE_KEY, "")


@dataclass
class StorageClass:
    name: str
    parameters: dict[str, str]
    binding_mode: str = "WaitForFirstConsumer"  # or "Immediate"
    fs_type: str = "ext4"


@dataclass
class PersistentVolume:
    name: str
    volume_handle: str
    capacity_bytes: int
    fs_type: str = "ext4"
    storage_class: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    # One term, AND of (key, allowed values); None means no affinity.
    node_affinity: list[tuple[str, list[str]]] | None = None
    volume_context: dict[str, str] = field(default_factory=dict)
    claim: str = ""
    access_mode: int = AccessMode.SINGLE_NODE_WRITER
    block: bool = False

    def allows(self, node: Node) -> bool:
        if self.node_affinity is None:
            return True
        return all(node.labels.get(key) in values for key, values in self.node_affinity)


@dataclass
class PersistentVolumeClaim:
    name: str
    storage_class: str
    request_bytes: int
    namespace: str = "default"
    volume_name: str = ""  # set when Bound
    annotations: dict[str, str] = field(default_factory=dict)
    block: bool = False

    @property
    def phase(self) -> str:
        return "Bound" if self.volume_name else "Pending"


@dataclass
class Pod:
    name: str
    claim: str
    mount_path: str = "/data"
    node_selector: dict[str, str] = field(default_factory=dict)
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    node: str = ""
    phase: str = "Pending"
    reason: str = ""
    read_only: bool = False

    def volume_target(self, node: Node, pv: PersistentVolume) -> Path:
        if pv.block:
            return (
                node.kubelet_dir
                / "plugins/kubernetes.io/csi/volumeDevices/publish"
                / pv.name
                / self.uid
            )
        return (
            node.kubelet_dir / "pods" / self.uid / "volumes/kubernetes.io~csi" / pv.name / "mount"
        )


def staging_path(node: Node, pv: PersistentVolume, driver: str = DRIVER_NAME) -> Path:
    """Where kubelet asks the plugin to stage a volume (its own layout)."""
    if pv.block:
        return node.kubelet_dir / "plugins/kubernetes.io/csi/volumeDevices/staging" / pv.name
    digest = hashlib.sha256(pv.volume_handle.encode()).hexdigest()
    return node.kubelet_dir / "plugins/kubernetes.io/csi" / driver / digest / "globalmount"


def capability(
    pv_or_fs: PersistentVolume | str, access_mode: int | None = None
) -> csi_pb2.VolumeCapability:
    if isinstance(pv_or_fs, PersistentVolume):
        block, fs_type, mode = pv_or_fs.block, pv_or_fs.fs_type, pv_or_fs.access_mode
    else:
        block, fs_type, mode = False, pv_or_fs, AccessMode.SINGLE_NODE_WRITER
    if access_mode is not None:
        mode = access_mode
    cap = csi_pb2.VolumeCapability(access_mode=AccessMode(mode=mode))
    if block:
        cap.block.SetInParent()
    else:
        cap.mount.fs_type = fs_type
    return cap


class Cluster:
    """The API objects and the controllers that act on them."""

    def __init__(
        self,
        controller: Plugin,
        *,
        attach_mode: str = "node",
        driver: str = DRIVER_NAME,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.controller = controller
        self.attach_mode = attach_mode
        self.driver = driver
        self.nodes: dict[str, Node] = {}
        self.classes: dict[str, StorageClass] = {}
        self.claims: dict[str, PersistentVolumeClaim] = {}
        self.volumes: dict[str, PersistentVolume] = {}
        self.pods: dict[str, Pod] = {}
        self.attachments: set[tuple[str, str]] = set()  # (volume handle, node) published
        self.on_event = on_event or (lambda text: None)

    # ------------------------------------------------------------------ nodes

    def register_node(self, plugin: Plugin, kubelet_dir: Path) -> Node:
        """What node-driver-registrar and kubelet do: NodeGetInfo into labels and CSINode."""
        info = plugin.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=30)
        topology = dict(info.accessible_topology.segments)
        labels = dict(topology)
        labels["kubernetes.io/hostname"] = info.node_id
        node = Node(
            name=info.node_id,
            plugin=plugin,
            kubelet_dir=kubelet_dir,
            labels=labels,
            topology=topology,
            max_volumes=info.max_volumes_per_node,
        )
        self.nodes[node.name] = node
        return node

    # ------------------------------------------------------------------ provisioning

    def add_class(self, storage_class: StorageClass) -> None:
        self.classes[storage_class.name] = storage_class

    def create_claim(self, claim: PersistentVolumeClaim) -> None:
        self.claims[claim.name] = claim
        storage_class = self.classes[claim.storage_class]
        if storage_class.binding_mode == "Immediate":
            self._provision(claim, None)

    def add_static_volume(self, pv: PersistentVolume, claim: PersistentVolumeClaim) -> None:
        """An operator's PV and the claim bound to it (the static way)."""
        pv.claim = claim.name
        claim.volume_name = pv.name
        self.volumes[pv.name] = pv
        self.claims[claim.name] = claim

    def _provision(self, claim: PersistentVolumeClaim, node: Node | None) -> PersistentVolume:
        """external-provisioner with --strict-topology and --extra-create-metadata."""
        storage_class = self.classes[claim.storage_class]
        pv_name = f"pvc-{uuid.uuid5(uuid.NAMESPACE_URL, claim.namespace + '/' + claim.name)}"
        parameters = dict(storage_class.parameters)
        parameters.update(
            {
                "csi.storage.k8s.io/pvc/name": claim.name,
                "csi.storage.k8s.io/pvc/namespace": claim.namespace,
                "csi.storage.k8s.io/pv/name": pv_name,
            }
        )
        request = csi_pb2.CreateVolumeRequest(
            name=pv_name,
            capacity_range=csi_pb2.CapacityRange(required_bytes=claim.request_bytes),
            volume_capabilities=[
                capability(
                    PersistentVolume(
                        name=pv_name,
                        volume_handle="",
                        capacity_bytes=0,
                        fs_type=storage_class.fs_type,
                        block=claim.block,
                    )
                )
            ],
            parameters=parameters,
        )
        if node is not None:
            # Strict topology: only the selected node's own segment, as requisite and preferred.
            segment = csi_pb2.Topology(segments=node.topology)
            request.accessibility_requirements.requisite.append(segment)
            request.accessibility_requirements.preferred.append(segment)
        reply = self.controller.controller.CreateVolume(request, timeout=CALL_TIMEOUT)
        volume = reply.volume
        affinity: list[tuple[str, list[str]]] | None = None
        if volume.accessible_topology:
            # One term per topology; the driver answers one segment.
            segments = volume.accessible_topology[0].segments
            affinity = [(key, [value]) for key, value in sorted(segments.items())]
        pv = PersistentVolume(
            name=pv_name,
            volume_handle=volume.volume_id,
            capacity_bytes=volume.capacity_bytes,
            fs_type=storage_class.fs_type,
            storage_class=storage_class.name,
            node_affinity=affinity,
            volume_context=dict(volume.volume_context),
            claim=claim.name,
            block=claim.block,
        )
        self.volumes[pv.name] = pv
        claim.volume_name = pv.name
        self.on_event(f"provisioned {pv.name} ({volume.volume_id}) for claim {claim.name}")
        return pv

    def delete_claim(self, name: str) -> None:
        """Reclaim policy Delete: the provisioner calls DeleteVolume."""
        claim = self.claims.pop(name)
        if not claim.volume_name:
            return
        pv = self.volumes.pop(claim.volume_name)
        if pv.storage_class:
            self.controller.controller.DeleteVolume(
                csi_pb2.DeleteVolumeRequest(volume_id=pv.volume_handle), timeout=CALL_TIMEOUT
            )

    # ------------------------------------------------------------------ scheduling

    def feasible_nodes(self, pod: Pod) -> list[Node]:
        claim = self.claims[pod.claim]
        candidates = [
            n
            for n in self.nodes.values()
            if n.ready and all(n.labels.get(k) == v for k, v in pod.node_selector.items())
        ]
        if claim.volume_name:
            pv = self.volumes[claim.volume_name]
            candidates = [n for n in candidates if pv.allows(n)]
        return sorted(candidates, key=lambda n: n.name)

    def schedule(self, pod: Pod, prefer: Callable[[Node], bool] | None = None) -> Node:
        """Place the pod, provisioning a WaitForFirstConsumer claim for the chosen node."""
        self.pods[pod.name] = pod
        nodes = self.feasible_nodes(pod)
        if prefer is not None:
            nodes = sorted(nodes, key=lambda n: not prefer(n))
        if not nodes:
            pod.phase, pod.reason = "Pending", "node(s) had volume node affinity conflict"
            raise SchedulingError(f"pod {pod.name}: 0 nodes available: {pod.reason}")
        claim = self.claims[pod.claim]
        for node in nodes:
            if not claim.volume_name:
                claim.annotations[SELECTED_NODE] = node.name
                try:
                    self._provision(claim, node)
                except grpc.RpcError as err:
                    if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                    # What external-provisioner does: drop selected-node so the scheduler
                    # places the pod again, away from the topology that has no capacity.
                    del claim.annotations[SELECTED_NODE]
                    self.on_event(
                        f"provisioning {claim.name} on {node.name} ({node.zone}) failed: "
                        f"RESOURCE_EXHAUSTED: {err.details()}; rescheduling"
                    )
                    continue
            pod.node = node.name
            return node
        pod.phase, pod.reason = "Pending", "no capacity in any feasible topology"
        raise SchedulingError(f"pod {pod.name}: {pod.reason}")

    # ------------------------------------------------------------------ kubelet

    def start_pod(self, pod: Pod) -> Path:
        """Attach (controller mode), stage and publish the pod's volume; return the target."""
        node = self.nodes[pod.node]
        pv = self.volume_of(pod)
        publish_context: Mapping[str, str] = {}
        if self.attach_mode == "controller":
            reply = self.controller.controller.ControllerPublishVolume(
                csi_pb2.ControllerPublishVolumeRequest(
                    volume_id=pv.volume_handle,
                    node_id=node.name,
                    volume_capability=capability(pv),
                    readonly=False,
                    volume_context=pv.volume_context,
                ),
                timeout=CALL_TIMEOUT,
            )
            publish_context = dict(reply.publish_context)
            self.attachments.add((pv.volume_handle, node.name))
        staging = staging_path(node, pv, self.driver)
        staging.parent.mkdir(parents=True, exist_ok=True)
        if not pv.block:
            staging.mkdir(exist_ok=True)
        node.plugin.node.NodeStageVolume(
            csi_pb2.NodeStageVolumeRequest(
                volume_id=pv.volume_handle,
                publish_context=publish_context,
                staging_target_path=str(staging),
                volume_capability=capability(pv),
                volume_context=pv.volume_context,
            ),
            timeout=CALL_TIMEOUT,
        )
        target = pod.volume_target(node, pv)
        target.parent.mkdir(parents=True, exist_ok=True)
        node.plugin.node.NodePublishVolume(
            csi_pb2.NodePublishVolumeRequest(
                volume_id=pv.volume_handle,
                publish_context=publish_context,
                staging_target_path=str(staging),
                target_path=str(target),
                volume_capability=capability(pv),
                readonly=pod.read_only,
                volume_context=pv.volume_context,
            ),
            timeout=CALL_TIMEOUT,
        )
        pod.phase = "Running"
        return target

    def delete_pod(self, name: str, *, node_lost: bool = False) -> None:
        """Unpublish and unstage on the pod's node, then detach (controller mode).

        With ``node_lost`` the node is gone: nothing runs there, and the attacher detaches
        from the dead node when the pod's volume is needed elsewhere.
        """
        pod = self.pods.pop(name)
        if not pod.node:
            return
        node = self.nodes[pod.node]
        pv = self.volume_of(pod)
        if not node_lost:
            target = pod.volume_target(node, pv)
            node.plugin.node.NodeUnpublishVolume(
                csi_pb2.NodeUnpublishVolumeRequest(
                    volume_id=pv.volume_handle, target_path=str(target)
                ),
                timeout=CALL_TIMEOUT,
            )
            if not self._volume_used_on(node.name, pv.name):
                node.plugin.node.NodeUnstageVolume(
                    csi_pb2.NodeUnstageVolumeRequest(
                        volume_id=pv.volume_handle,
                        staging_target_path=str(staging_path(node, pv, self.driver)),
                    ),
                    timeout=CALL_TIMEOUT,
                )
        if self.attach_mode == "controller" and not self._volume_used_on(node.name, pv.name):
            self.controller.controller.ControllerUnpublishVolume(
                csi_pb2.ControllerUnpublishVolumeRequest(
                    volume_id=pv.volume_handle, node_id=node.name
                ),
                timeout=CALL_TIMEOUT,
            )
            self.attachments.discard((pv.volume_handle, node.name))

    def _volume_used_on(self, node_name: str, pv_name: str) -> bool:
        return any(
            p.node == node_name and self.claims[p.claim].volume_name == pv_name
            for p in self.pods.values()
        )

    # ------------------------------------------------------------------ views

    def volume_of(self, pod: Pod) -> PersistentVolume:
        return self.volumes[self.claims[pod.claim].volume_name]


def zone_label_pairs(zone: str, region: str) -> dict[str, str]:
    """The labels an operator writes on a static PV (the traditional way)."""
    return {LEGACY_ZONE_KEY: zone, LEGACY_REGION_KEY: region, K8S_ZONE_KEY: zone}


def pv_zone(pv: PersistentVolume) -> str:
    for key, values in pv.node_affinity or []:
        if key in ZONE_KEYS and values:
            return values[0]
    return pv.labels.get(LEGACY_ZONE_KEY, "")


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """``kubectl get`` style: upper-case headers, columns padded by three spaces."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["   ".join(c.ljust(w) for c, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def human_size(n: int) -> str:
    return f"{n // GIB}Gi" if n % GIB == 0 else f"{n}"


def read_text(path: Path) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def write_text(path: Path, text: str) -> None:
    """What the pod's container does: write and make it durable."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
