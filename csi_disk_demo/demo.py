"""``csi-disk-demo`` (or ``csi-disk demo``): the topology-aware story, end to end, on a real
Kubernetes control plane with the real CSI sidecars.

For each attach mode it brings up ``csi_disk_demo.kube.Cluster``: the ECS emulator (three zones
of mixed instance families), etcd, kube-apiserver, kube-controller-manager and kube-scheduler on
127.0.0.1, deploy/ applied with kubectl, the driver's pods and the sidecars as host processes
under the RBAC in deploy/, and a node agent per instance playing kubelet. Then it plays the
seed's story with kubectl, printing each command and what it answered:

1. the static way: an operator's disk behind the seed's PV with zone labels; a pod pinned to
   another zone is refused by the scheduler, the Deployment's pod lands in the disk's zone;
2. the topology-aware way: the WaitForFirstConsumer claim stays Pending, with no disk made,
   until the scheduler places the pod; then it is Bound in that pod's zone;
3. the pod writes ``/data/test``; its node is cordoned and the pod deleted; the ReplicaSet's
   new pod runs on the other node of the zone and ``ls /data`` shows ``lost+found`` and ``test``;
4. in controller attach mode, the same through VolumeAttachments, then the instance under the
   pod stops: the node goes NotReady, the operator marks it out of service, and the pod moves
   within the zone with its data;
5. in node attach mode, beyond the zone: the nodes' disktype labels, the CSIStorageCapacity
   csi-provisioner publishes for a class of ESSD Entry, and its pod placed on the one node
   whose family attaches it.

``kubectl exec`` is played by the node agent (no kubelet streaming server runs here). Every
step is checked; the command exits non-zero if any check fails, and stops everything it
started, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from csi_disk import DRIVER_NAME
from csi_disk_demo.kube import objects
from csi_disk_demo.kube.cluster import Cluster
from csi_disk_demo.kube.objects import OUT_OF_SERVICE, SELECTED_NODE, ZONE


class StoryFailed(Exception):
    """A check of the story did not hold."""


class Narrator:
    """Prints the story in the style of a terminal session and keeps the score."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.passed: list[str] = []
        self.failed: list[str] = []

    def step(self, title: str) -> None:
        print(f"\n=== {title}", file=self.out, flush=True)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def command(self, text: str) -> None:
        print(f"$ {text}", file=self.out, flush=True)

    def check(self, what: str, ok: bool, detail: str = "") -> None:
        mark = "ok  " if ok else "FAIL"
        suffix = f" ({detail})" if detail else ""
        print(f"  [{mark}] {what}{suffix}", file=self.out, flush=True)
        (self.passed if ok else self.failed).append(what)
        if not ok:
            raise StoryFailed(what + suffix)


class Story:
    def __init__(self, cluster: Cluster, narrator: Narrator) -> None:
        self.cluster = cluster
        self.n = narrator

    # ------------------------------------------------------------------ kubectl

    def kubectl(self, *args: str, note: str = "") -> str:
        """Run kubectl as the cluster's administrator and show the command and its answer."""
        self.n.command("kubectl " + " ".join(args) + (f"   # {note}" if note else ""))
        out = self.cluster.kubectl(*args).stdout.rstrip()
        if out:
            self.n.say(out)
        return out

    def apply(self, what: str, *items: dict[str, Any]) -> None:
        self.n.command(f"kubectl apply -f -   # {what}")
        out = self.cluster.kubectl("apply", "-f", "-", stdin=objects.dump(list(items)))
        self.n.say(out.stdout.rstrip())

    def exec(self, pod: dict[str, Any], *argv: str) -> str:
        shown = " ".join(a if " " not in a else repr(a) for a in argv)
        self.n.command(f"kubectl exec {pod['metadata']['name']} -- {shown}")
        out = self.cluster.exec(pod, *argv)
        if out.strip():
            self.n.say(out.rstrip())
        return out

    def delete(self, *items: dict[str, Any]) -> None:
        names = " ".join(f"{o['kind'].lower()}/{o['metadata']['name']}" for o in items)
        self.n.command(f"kubectl delete {names}")
        objects.delete(self.cluster, *items)

    def running_pod(self, app: str, other_than: str = "") -> dict[str, Any]:
        try:
            return objects.running_pod(self.cluster, app, 120, other_than)
        except TimeoutError:
            listing = self.cluster.kubectl("get", "pods,pvc", "-o", "wide", check=False)
            raise StoryFailed(f"no Running pod of {app}:\n{listing.stdout}") from None

    def show_nodes(self) -> None:
        self.kubectl("get", "nodes", "-L", ZONE)

    # ------------------------------------------------------------------ 1: static

    def static_way(self) -> None:
        self.n.step("1. The static way: an operator's disk, the seed's PV with zone labels")
        cluster = self.cluster
        zone, other_zone = cluster.info.zones[0], cluster.info.zones[1]
        self.n.command(f"aliyun ecs CreateDisk --ZoneId {zone} --DiskCategory cloud_ssd --Size 20")
        disk_id = objects.operator_disk(cluster, zone, f"demo-static-{cluster.attach_mode}")
        self.n.say(f'{{"DiskId": "{disk_id}"}}')
        pv, pvc = objects.static_pv(disk_id, zone, cluster.info.region)
        self.apply(f"deploy/examples/static-pv.yaml, volumeHandle {disk_id}", pv, pvc)
        self.kubectl("get", "pv", pv["metadata"]["name"], "--show-labels")
        wrong = objects.seed_deployment(pvc["metadata"]["name"], "static-wrong-zone")
        wrong["spec"]["template"]["spec"]["nodeSelector"] = {ZONE: other_zone}
        attaches = objects.calls(cluster, "AttachDisk")
        self.apply(f"a Deployment of the static claim pinned to {other_zone}", wrong)
        pending = cluster.wait(
            lambda: [p for p in cluster.pods(selector="app=static-wrong-zone")
                     if objects.refused(p)],
            "the scheduler's refusal",
        )  # fmt: skip
        self.kubectl("get", "pods", "-l", "app=static-wrong-zone", "-o", "wide")
        message = pending[0]["status"]["conditions"][0]["message"]
        self.n.say(f"PodScheduled=False: {message}")
        self.n.check(
            f"the scheduler refuses to place it in {other_zone}",
            "didn't match PersistentVolume's node affinity" in message,
        )
        self.n.check("no attach was even tried", objects.calls(cluster, "AttachDisk") == attaches)
        self.delete(wrong)
        right = objects.seed_deployment(pvc["metadata"]["name"], "static")
        self.apply("the seed's Deployment with the static claim", right)
        pod = self.running_pod("static")
        self.kubectl("get", "pods", "-l", "app=static", "-o", "wide")
        node = pod["spec"]["nodeName"]
        self.n.check(
            f"the scheduler placed it in the disk's zone {zone}", cluster.zone_of(node) == zone
        )
        self.exec(pod, "sh", "-c", "echo 'from the static way' > /data/hello")
        self.n.check(
            "the pod mounts the disk and writes to it",
            self.exec(pod, "cat", "/data/hello") == "from the static way\n",
        )
        self.delete(right, pvc, pv)

    # ------------------------------------------------------------------ 2 and 3: topology

    def topology_way(self) -> dict[str, Any]:
        self.n.step(
            "2. The topology-aware way: StorageClass alicloud-disk-aware, WaitForFirstConsumer"
        )
        cluster = self.cluster
        self.kubectl("get", "storageclass", "alicloud-disk-aware")
        seed = objects.example("dynamic.yaml")
        pvc, deployment = objects.by_kind(seed, "PersistentVolumeClaim"), objects.seed_deployment()
        creates = objects.calls(cluster, "CreateDisk")
        self.apply("the PVC disk-pvc from deploy/examples/dynamic.yaml", pvc)
        time.sleep(3)  # the binder and the provisioner have had their chance
        self.kubectl("get", "pvc", "disk-pvc")
        self.n.check(
            "the claim stays Pending without a pod",
            objects.claim(cluster, "disk-pvc")["status"].get("phase") == "Pending",
        )
        self.n.check(
            "no disk was created before the pod was placed",
            objects.calls(cluster, "CreateDisk") == creates,
        )
        self.apply("the Deployment nginx-disk from deploy/examples/dynamic.yaml", deployment)
        pod = self.running_pod("nginx-disk")
        node = pod["spec"]["nodeName"]
        zone = cluster.zone_of(node)
        self.kubectl("get", "pods", "-l", "app=nginx-disk", "-o", "wide")
        self.kubectl("get", "pvc", "disk-pvc")
        described = cluster.kubectl("describe", "pvc", "disk-pvc").stdout
        self.n.command("kubectl describe pvc disk-pvc | grep selected-node")
        self.n.say("\n".join(line for line in described.splitlines() if SELECTED_NODE in line))
        pv = objects.bound_volume(cluster, "disk-pvc")
        self.kubectl(
            "get", "pv", pv["metadata"]["name"], "-o",
            "custom-columns=NAME:.metadata.name,CAPACITY:.spec.capacity.storage,"
            "HANDLE:.spec.csi.volumeHandle,"
            "ZONE:.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions"
            f"[?(@.key=='{objects.DRIVER_ZONE}')].values[0]",
        )  # fmt: skip
        disk = objects.emulator_disks(cluster)[pv["spec"]["csi"]["volumeHandle"]]
        annotations = objects.claim(cluster, "disk-pvc")["metadata"].get("annotations", {})
        self.n.check("the claim is Bound once the pod is placed", bool(pv))
        self.n.check(
            "the claim carries volume.kubernetes.io/selected-node",
            annotations.get(SELECTED_NODE) == node,
        )
        self.n.check(
            f"the PV's node affinity names the pod's zone {zone}",
            objects.affinity_zone(pv) == zone,
        )
        self.n.check(f"the disk really lives in {zone}", disk["zone"] == zone, disk["id"])
        self.n.check(
            "exactly one disk was created", objects.calls(cluster, "CreateDisk") == creates + 1
        )

        self.n.step("3. The pod writes /data/test; it is deleted and recreated; the file stays")
        self.exec(pod, "sh", "-c", "echo hello > /data/test")
        self.kubectl("cordon", node, note="so the new pod lands on the zone's other node")
        try:
            self.kubectl("delete", "pod", pod["metadata"]["name"], "--wait=false")
            moved = self.running_pod("nginx-disk", other_than=pod["metadata"]["name"])
            self.kubectl("get", "pods", "-l", "app=nginx-disk", "-o", "wide")
        finally:
            self.kubectl("uncordon", node)
        second = moved["spec"]["nodeName"]
        self.n.check(
            f"the ReplicaSet's new pod runs on another node of {zone}",
            second != node and cluster.zone_of(second) == zone,
            f"{node} -> {second}",
        )
        listing = self.exec(moved, "ls", "/data")
        self.n.check(
            "ls /data shows lost+found and test", listing.split() == ["lost+found", "test"]
        )
        self.n.check(
            "the file written by the first pod is still there",
            self.exec(moved, "cat", "/data/test") == "hello\n",
        )
        if cluster.attach_mode == "controller":
            self.kubectl("get", "volumeattachments")
            self.n.check(
                "csi-attacher attached the disk to the new node only",
                cluster.wait(
                    lambda: objects.attachments(cluster, disk["id"]) == {second: True},
                    "one attachment",
                ),
            )
        return {"pvc": pvc, "deployment": deployment, "disk": disk["id"], "pod": moved}

    def clean_up(self, story: dict[str, Any]) -> None:
        self.delete(story["deployment"], story["pvc"])
        self.n.check(
            "deleting the claim deletes its disk",
            story["disk"] not in objects.emulator_disks(self.cluster),
        )

    # ------------------------------------------------------------------ 5: families

    def beyond_the_zone(self) -> None:
        self.n.step("5. Beyond the zone: the disk categories each node's instance family attaches")
        cluster = self.cluster
        entry = "node.csi.alibabacloud.com/disktype.cloud_essd_entry"
        self.kubectl("get", "nodes", "-L", f"{ZONE},{entry}",
                     note="kubelet's labels from NodeGetInfo, upstream's names")  # fmt: skip
        sc = objects.storage_class("alicloud-disk-entry", "cloud_essd_entry")
        pvc = objects.claim_of("entry-pvc", "alicloud-disk-entry")
        deployment = objects.seed_deployment("entry-pvc", "entry")
        self.apply("a StorageClass of ESSD Entry, which only the u1 family attaches", sc)
        nodes = [i.id for i in cluster.info.instances]
        cluster.wait(
            lambda: all(objects.capacity_on(cluster, "alicloud-disk-entry", n) for n in nodes),
            "csi-provisioner's CSIStorageCapacity for the class",
        )
        columns = ("custom-columns=CLASS:.storageClassName,"
                   "NODE:.nodeTopology.matchLabels.alibabacloud\\.com/ecs-instance-id,"
                   "CAPACITY:.capacity,MAXIMUM:.maximumVolumeSize")  # fmt: skip
        listing = cluster.kubectl("get", "csistoragecapacities", "-n", "kube-system", "-o",
                                  columns).stdout.splitlines()  # fmt: skip
        self.n.command(f"kubectl get csistoragecapacities -n kube-system -o {columns} "
                       "| grep -e CLASS -e alicloud-disk-entry")  # fmt: skip
        shown = [ln for ln in listing if ln.startswith("CLASS") or "alicloud-disk-entry" in ln]
        self.n.say("\n".join(shown))
        (u1,) = [i.id for i in cluster.info.instances if i.instance_type == "ecs.u1-c1m2.large"]
        creates = objects.calls(cluster, "CreateDisk")
        self.apply("a claim of that class and the seed's Deployment", pvc, deployment)
        try:
            pod = self.running_pod("entry")
            self.kubectl("get", "pods", "-l", "app=entry", "-o", "wide")
            self.n.check(
                "the scheduler placed the pod on the u1 node, the one with capacity for it",
                pod["spec"]["nodeName"] == u1,
            )
            pv = objects.bound_volume(cluster, "entry-pvc")
            self.n.check(
                "the PV's node affinity requires the ESSD Entry label",
                objects.affinity(pv).get(entry) == ["available"],
            )
            self.n.check(
                "one disk was created, no CreateVolume failed",
                objects.calls(cluster, "CreateDisk") == creates + 1
                and not objects.provisioning_failures(cluster, "entry-pvc"),
            )
        finally:
            self.delete(deployment, pvc, sc)

    # ------------------------------------------------------------------ 4: a lost node

    def node_lost(self, story: dict[str, Any]) -> None:
        self.n.step("4. Controller attach mode: the instance under the pod stops")
        cluster = self.cluster
        pod = story["pod"]
        node = pod["spec"]["nodeName"]
        zone = cluster.zone_of(node)
        self.n.say(f"instance {node} stops: its kubelet and node plugin go with it")
        cluster.stop_node(node)
        cluster.wait(lambda: objects.node_ready(cluster, node) != "True", f"{node} NotReady")
        self.show_nodes()
        self.kubectl(
            "taint", "nodes", node, f"{OUT_OF_SERVICE}=nodeshutdown:NoExecute",
            note="the operator confirms the node is gone",
        )  # fmt: skip
        try:
            moved = self.running_pod("nginx-disk", other_than=pod["metadata"]["name"])
            self.kubectl("get", "pods", "-l", "app=nginx-disk", "-o", "wide")
            second = moved["spec"]["nodeName"]
            self.n.check(
                f"the pod moved to the other node of {zone}",
                second != node and cluster.zone_of(second) == zone,
                f"{node} -> {second}",
            )
            self.n.check(
                "the disk followed it without data loss",
                self.exec(moved, "cat", "/data/test") == "hello\n",
            )
        finally:
            self.n.say(f"instance {node} starts again")
            cluster.restart_node(node)
            self.kubectl("taint", "nodes", node, f"{OUT_OF_SERVICE}-")


DESCRIPTION = (
    "Play the topology-aware story end to end on a real Kubernetes control plane with the "
    "real CSI sidecars, on the built-in emulator."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir", type=Path, help="where state, sockets and logs go (default: a temp dir)"
    )
    parser.add_argument(
        "--latency-scale",
        type=float,
        default=0.05,
        help="emulated ECS latencies as a fraction of realistic seconds",
    )
    parser.add_argument("--keep", action="store_true", help="keep the state dir afterwards")


def play(mode: str, state_dir: Path, latency_scale: float, narrator: Narrator) -> None:
    started = time.monotonic()
    title = "node attach mode (deploy/kubernetes/)" if mode == "node" else (
        "controller attach mode (deploy/kubernetes/controller-attach/)"
    )  # fmt: skip
    narrator.step(f"A real cluster in {title}")
    with Cluster(state_dir / mode, mode, latency_scale=latency_scale) as cluster:
        cluster.start()
        narrator.say(
            f"etcd, kube-apiserver, kube-controller-manager, kube-scheduler, "
            f"{len(cluster.controllers)} controller replicas with their sidecars and "
            f"{len(cluster.node_pods)} node plugins up in {time.monotonic() - started:.0f}s"
        )
        story = Story(cluster, narrator)
        story.show_nodes()
        story.kubectl(
            "get", "csinodes", "-o",
            "custom-columns=NODE:.metadata.name,DRIVER:.spec.drivers[0].name,"
            "NODE-ID:.spec.drivers[0].nodeID,MAX-VOLUMES:.spec.drivers[0].allocatable.count",
        )  # fmt: skip
        if mode == "node":
            story.static_way()
        result = story.topology_way()
        if mode == "controller":
            story.node_lost(result)
        story.clean_up(result)
        if mode == "node":
            story.beyond_the_zone()


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="csi-disk-demo-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    narrator = Narrator(out)

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    ok = False
    try:
        narrator.say(f"csi-disk demo: driver {DRIVER_NAME}, state in {state_dir}")
        for mode in ("node", "controller"):
            play(mode, state_dir, args.latency_scale, narrator)
        ok = True
    except StoryFailed as err:
        narrator.say(f"\nthe story stopped: {err}")
    except KeyboardInterrupt:
        narrator.say("\ninterrupted: cleaning up")
    except Exception as err:
        narrator.say(f"\nthe story broke: {type(err).__name__}: {err}")
    if ok and not narrator.failed:
        narrator.say(
            f"\ncsi-disk demo: all {len(narrator.passed)} checks passed."
            "\nNext: `csi-disk serve --help` for every flag, deploy/kubernetes/ for the"
            " manifests, docs/kubernetes.md for the cluster, docs/ for the guides."
        )
        if not args.keep and args.state_dir is None:
            shutil.rmtree(state_dir, ignore_errors=True)
        return 0
    narrator.say(f"csi-disk demo: FAILED; logs are under {state_dir}")
    return 1


def main(argv: Sequence[str] | None = None, prog: str = "csi-disk-demo") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
