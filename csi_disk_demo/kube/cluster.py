"""One real cluster on this machine: the ECS emulator, the control plane, deploy/ applied,
the driver's node pods and controller replicas run from its templates, snapshot-controller,
and a node agent per emulated instance. ``close`` stops it all, in a ``finally`` path of every
user, and sweeps the mounts and loop devices left under its folder."""

from __future__ import annotations

import base64
import contextlib
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

from csi_disk import DRIVER_NAME
from csi_disk.csi_pb import csi_pb2, csi_pb2_grpc
from csi_disk_demo.kube import binaries, manifests
from csi_disk_demo.kube.api import Api, Credentials
from csi_disk_demo.kube.control_plane import ControlPlane, write_kubeconfig
from csi_disk_demo.kube.host_pods import HostPod, environ_for_pods
from csi_disk_demo.kube.node_agent import NodeAgent
from csi_disk_demo.stack import Stack, sweep
from csi_disk_emulator.process import EmulatorInfo, EmulatorInstance
from csi_disk_emulator.topology import ZONAL_CATEGORIES

NAMESPACE = "kube-system"
STOCK_REFRESH = 2  # seconds; the manifests' default is 60
CAPACITY_POLL = "3s"  # the manifests poll every minute
CREDENTIALS_SECRET = "csi-disk-credentials"  # noqa: S105 - the Secret's name
CONTROLLER = "csi-disk-controller"
NODE = "csi-disk-node"
SNAPSHOT_CONTROLLER = "snapshot-controller"


REGION = "cn-hangzhou"
# The instances of each zone, by instance type. Every zone that sells the seed's cloud_ssd has
# two nodes that attach it (a pod moves between them); ESSD Entry attaches only to the u1 node
# and regional ESSD only to the NVMe g8i nodes, which two zones have; the last zone sells no
# cloud_ssd, as some real zones do.
LAYOUT: dict[str, tuple[str, ...]] = {
    f"{REGION}-h": ("ecs.g7.large", "ecs.g7.large", "ecs.g8i.large"),
    f"{REGION}-i": ("ecs.g7.large", "ecs.u1-c1m2.large"),
    f"{REGION}-j": ("ecs.g8i.large", "ecs.g8i.large"),
}
NOT_SOLD = {f"{REGION}-j": ("cloud", "cloud_ssd")}


def emulator_topology(layout: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The emulator's topology file for ``layout``."""
    zones = []
    for zone in layout:
        sold = [c for c in ZONAL_CATEGORIES if c not in NOT_SOLD.get(zone, ())]
        zones.append({"id": zone, "categories": sold})
    instances = [
        {"zone": zone, "instance_type": instance_type}
        for zone, types in layout.items()
        for instance_type in types
    ]
    return {"region": REGION, "zones": zones, "instances": instances}


class Cluster:
    def __init__(
        self,
        state_dir: Path,
        attach_mode: str,
        *,
        latency_scale: float = 0.02,
        layout: Mapping[str, Sequence[str]] = LAYOUT,
    ) -> None:
        if attach_mode not in manifests.OVERLAYS:
            raise ValueError(f"attach mode must be one of {sorted(manifests.OVERLAYS)}")
        self.state_dir = state_dir
        self.attach_mode = attach_mode
        self.layout = dict(layout)
        self.zones = len(self.layout)
        self.stack = Stack(state_dir / "stack", latency_scale=latency_scale)
        self.control_plane = ControlPlane(state_dir / "kube")
        self.objects: list[dict[str, Any]] = []
        self.node_pods: dict[str, HostPod] = {}
        self.controllers: dict[str, HostPod] = {}
        self.snapshot_controller: HostPod | None = None
        self.agents: dict[str, NodeAgent] = {}
        self.controller_nodes: dict[str, str] = {}
        # Kubelet folders and pod sockets: unix socket paths must stay under 108 bytes, which
        # a test's temporary folder would exceed.
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="csi-kube-"))

    @property
    def info(self) -> EmulatorInfo:
        assert self.stack.info is not None
        return self.stack.info

    @property
    def admin(self) -> Api:
        return self.control_plane.admin

    def kubectl(self, *args: str, **options: Any) -> Any:
        return self.control_plane.kubectl(*args, **options)

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        for tool in ("kubernetes", "etcd", "csi-provisioner", "csi-attacher", "csi-resizer",
                     "csi-snapshotter"):  # fmt: skip
            binaries.tool_bin(tool)  # builds once per machine, before anything starts
        self.stack.start_emulator(topology=emulator_topology(self.layout))
        self.control_plane.start()
        self.install()
        for instance in self.info.instances:
            self.start_node_pod(instance)
        self.wait_plugins_ready(self.node_pods.values())
        for instance in self.info.instances:
            self.start_agent(instance)
        self.start_controllers()
        self.start_snapshot_controller()
        self.wait_plugins_ready(self.controllers.values())

    def install(self) -> None:
        """What docs/install.md has an operator apply: the snapshot CRDs and controller RBAC,
        the driver's objects for this attach mode, its credentials Secret, the snapshot class."""
        self.objects = manifests.build(manifests.OVERLAYS[self.attach_mode])
        crds = manifests.build(binaries.snapshot_crds())
        self.apply(crds)
        self.kubectl("wait", "--for=condition=established", "--timeout=60s",
                     *(f"crd/{c['metadata']['name']}" for c in crds))  # fmt: skip
        self.apply(manifests.load_files([binaries.snapshot_controller_rbac()]))
        self.apply(manifests.cluster_objects(self.objects))
        self.apply(manifests.build(manifests.SNAPSHOT_CLASS))
        self.kubectl(
            "create", "secret", "generic", CREDENTIALS_SECRET, "-n", NAMESPACE,
            f"--from-literal=access-key-id={self.info.access_key_id}",
            f"--from-literal=access-key-secret={self.info.access_key_secret}",
        )  # fmt: skip

    def apply(self, objects: list[dict[str, Any]]) -> None:
        self.kubectl("apply", "-f", "-", stdin=manifests.dump(objects))

    def secret(self, name: str, key: str) -> str | None:
        """A Secret's value as kubelet hands it to a container's env."""
        found = self.admin.find(f"/api/v1/namespaces/{NAMESPACE}/secrets/{name}")
        if found is None or key not in (found.get("data") or {}):
            return None
        return base64.b64decode(found["data"][key]).decode()

    def service_account_kubeconfig(self, directory: Path, account: str) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        token = self.control_plane.token(NAMESPACE, account)
        return write_kubeconfig(
            directory / "kubeconfig",
            self.control_plane.server,
            self.control_plane.pki.cert,
            token=token,
        )

    def kubelet_dir(self, instance_id: str) -> Path:
        index = [i.id for i in self.info.instances].index(instance_id)
        path = self.runtime_dir / f"n{index}" / "kubelet"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start_node_pod(self, instance: EmulatorInstance) -> HostPod:
        template = manifests.find(self.objects, "DaemonSet", NODE)["spec"]["template"]
        pod = HostPod(
            name=f"{NODE}-{instance.id}",
            namespace=NAMESPACE,
            spec=template["spec"],
            directory=self.state_dir / "pods" / f"node-{instance.id}",
            kubelet_dir=self.kubelet_dir(instance.id),
            secret=self.secret,
            base_env=environ_for_pods(),
            # The emulator's endpoints, where a real node reaches ECS and 100.100.100.200.
            extra_args={"csi-disk": [
                "--ecs-endpoint", self.info.ecs_endpoint,
                "--metadata-endpoint", instance.metadata_endpoint,
                "--device-root", str(instance.device_root),
            ]},
        )  # fmt: skip
        pod.start()
        self.node_pods[instance.id] = pod
        return pod

    def start_agent(self, instance: EmulatorInstance) -> NodeAgent:
        pki = self.control_plane.pki
        pair = pki.client(f"node-{instance.id}", f"system:node:{instance.id}", ("system:nodes",))
        api = Api(self.control_plane.server, Credentials(pki.cert, pair.cert, pair.key))
        pod = self.node_pods[instance.id]
        agent = NodeAgent(
            instance.id,
            api,
            f"unix://{pod.socket()}",
            self.kubelet_dir(instance.id),
            DRIVER_NAME,
            log_dir=self.state_dir / "pods" / "logs",
        )
        agent.log_dir.mkdir(parents=True, exist_ok=True)
        agent.register()
        agent.start()
        self.agents[instance.id] = agent
        return agent

    def start_controllers(self) -> None:
        """The StatefulSet's replicas, one per zone as its anti-affinity asks, each on the
        first instance of its zone (whose metadata service it reads)."""
        statefulset = manifests.find(self.objects, "StatefulSet", CONTROLLER)
        replicas = int(statefulset["spec"].get("replicas", 1))
        if replicas > self.zones:
            raise ValueError(f"{replicas} controller replicas need as many zones")
        template = statefulset["spec"]["template"]
        for ordinal in range(replicas):
            self.start_controller(ordinal, template)

    def start_controller(self, ordinal: int, template: dict[str, Any] | None = None) -> HostPod:
        if template is None:
            statefulset = manifests.find(self.objects, "StatefulSet", CONTROLLER)
            template = statefulset["spec"]["template"]
        name = f"{CONTROLLER}-{ordinal}"
        instance = self.info.instances_in(self.info.zones[ordinal])[0]
        directory = self.state_dir / "pods" / name
        kubeconfig = self.service_account_kubeconfig(
            directory / "serviceaccount", template["spec"]["serviceAccountName"]
        )
        pod = HostPod(
            name=name,
            namespace=NAMESPACE,
            spec=template["spec"],
            directory=directory,
            kubeconfig=kubeconfig,
            secret=self.secret,
            base_env=environ_for_pods(),
            volumes_root=self.runtime_dir / f"c{ordinal}",
            extra_args={
                "csi-disk": [
                    "--ecs-endpoint", self.info.ecs_endpoint,
                    "--metadata-endpoint", instance.metadata_endpoint,
                    "--region", self.info.region,
                    # Stock changes show in seconds rather than the manifests' minute.
                    f"--stock-refresh-interval={STOCK_REFRESH}",
                ],
                "csi-provisioner": [
                    f"--capacity-poll-interval={CAPACITY_POLL}",
                    # The pod is a process here, not an API object its StatefulSet owns:
                    # its CSIStorageCapacity objects get no owner.
                    "--capacity-ownerref-level=-1",
                ],
            },
        )  # fmt: skip
        pod.start()
        self.controllers[name] = pod
        self.controller_nodes[name] = instance.id
        return pod

    def start_snapshot_controller(self) -> None:
        setup = binaries.snapshot_controller_rbac().with_name("setup-snapshot-controller.yaml")
        deployment = manifests.find(manifests.load_files([setup]), "Deployment",
                                    SNAPSHOT_CONTROLLER)  # fmt: skip
        template = deployment["spec"]["template"]
        directory = self.state_dir / "pods" / SNAPSHOT_CONTROLLER
        kubeconfig = self.service_account_kubeconfig(
            directory / "serviceaccount", template["spec"]["serviceAccountName"]
        )
        self.snapshot_controller = HostPod(
            name=f"{SNAPSHOT_CONTROLLER}-0",
            namespace=NAMESPACE,
            spec=template["spec"],
            directory=directory,
            kubeconfig=kubeconfig,
            base_env=environ_for_pods(),
        )
        self.snapshot_controller.start()

    def wait_plugins_ready(self, pods: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for pod in list(pods):
            with grpc.insecure_channel(f"unix://{pod.socket()}") as channel:
                identity = csi_pb2_grpc.IdentityStub(channel)
                while True:
                    pod.check_running()
                    try:
                        if identity.Probe(csi_pb2.ProbeRequest(), timeout=5).ready.value:
                            break
                    except grpc.RpcError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{pod.name} not ready after {timeout:.0f}s")
                    time.sleep(0.1)

    # ------------------------------------------------------------------ helpers

    def wait(self, condition: Any, what: str, timeout: float = 120, interval: float = 0.5) -> Any:
        """Poll ``condition`` until it returns something true; that value."""
        deadline = time.monotonic() + timeout
        while True:
            self.control_plane.check_running()
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not after {timeout:.0f}s")
            time.sleep(interval)

    def get(self, path: str) -> Any:
        return self.admin.find(path)

    def pods(self, namespace: str = "default", selector: str = "") -> list[dict[str, Any]]:
        query = {"labelSelector": selector} if selector else {}
        return list(self.admin.get(f"/api/v1/namespaces/{namespace}/pods", **query)["items"])

    def agent_of(self, pod: dict[str, Any]) -> NodeAgent:
        return self.agents[pod["spec"]["nodeName"]]

    def exec(self, pod: dict[str, Any], *argv: str) -> str:
        """``kubectl exec POD -- ARGV`` through the node agent; its stdout (raises on failure)."""
        done = self.agent_of(pod).exec(pod["metadata"]["namespace"], pod["metadata"]["name"],
                                       list(argv))  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"exec {argv} in {pod['metadata']['name']}: {done.stderr[-500:]}")
        return done.stdout

    def zone_of(self, node: str) -> str:
        return next(i.zone for i in self.info.instances if i.id == node)

    def instance(self, node: str) -> EmulatorInstance:
        return next(i for i in self.info.instances if i.id == node)

    def stop_node(self, node: str) -> None:
        """The instance stops: its kubelet (the agent) and node pod die with it, uncleanly,
        and its mounts go with its kernel; ECS keeps its disks attached to it."""
        self.agents.pop(node).stop()
        self.node_pods.pop(node).kill()
        sweep(self.kubelet_dir(node))
        self.info.admin("POST", f"instances/{node}/stop")

    def restart_node(self, node: str) -> None:
        """The instance starts again: its node pod and kubelet come back and re-register."""
        self.info.admin("POST", f"instances/{node}/start")
        pod = self.start_node_pod(self.instance(node))
        self.wait_plugins_ready([pod])
        self.start_agent(self.instance(node))

    def pids(self) -> list[int]:
        """Every process this cluster started and still knows of."""
        processes = [*self.control_plane.processes.values()]
        for pod in [
            *self.controllers.values(),
            *self.node_pods.values(),
            *([self.snapshot_controller] if self.snapshot_controller else []),
        ]:
            processes += pod.processes.values()
        for agent in self.agents.values():
            processes += [p for run in agent.pods.values() for p in run.processes.values()]
        if self.stack.emulator is not None:
            processes.append(self.stack.emulator)
        return [p.pid for p in processes if p.poll() is None]

    # ------------------------------------------------------------------ stop

    def close(self) -> None:
        errors: list[BaseException] = []
        for agent in list(self.agents.values()):
            with contextlib.suppress(Exception):
                agent.stop()
        self.agents.clear()
        pods = [*self.controllers.values(), *self.node_pods.values()]
        if self.snapshot_controller is not None:
            pods.append(self.snapshot_controller)
        for pod in pods:
            try:
                pod.stop()
            except Exception as err:  # keep stopping the rest
                errors.append(err)
        try:
            self.control_plane.close()
        finally:
            try:
                self.stack.close()
            finally:
                mounts, loops = sweep(self.runtime_dir)
                if not mounts and not loops:
                    shutil.rmtree(self.runtime_dir, ignore_errors=True)
        if errors:
            raise errors[0]

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
