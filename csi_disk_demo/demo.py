"""``csi-disk-demo`` (or ``csi-disk demo``): the topology-aware story, end to end, on the
built-in emulator.

It starts the emulator (three zones, two instances in each), one controller and one node
plugin per instance as separate ``csi-disk serve`` processes, and plays the Kubernetes side
(``csi_disk_demo.cluster``) step by step:

1. the static way: a pre-created disk behind a PV with zone labels;
2. the topology-aware way: a WaitForFirstConsumer claim stays Pending until its pod is
   placed, then gets a disk in that pod's zone;
3. the pod writes ``/data/test``, is deleted and recreated on another node of the zone, and
   the file is still there;
4. the same in controller attach mode, with a node failure in the middle.

Every step is checked; the command exits non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

from csi_disk import DRIVER_NAME
from csi_disk.cloud.credentials import Credentials, StaticProvider
from csi_disk.cloud.ecs import EcsCloud
from csi_disk.cloud.port import AVAILABLE, DiskRequest
from csi_disk.topology import K8S_ZONE_KEY
from csi_disk_demo.cluster import (
    GIB,
    SELECTED_NODE,
    Cluster,
    Node,
    PersistentVolume,
    PersistentVolumeClaim,
    Pod,
    SchedulingError,
    StorageClass,
    format_table,
    human_size,
    pv_zone,
    read_text,
    write_text,
    zone_label_pairs,
)
from csi_disk_demo.stack import EmulatorInfo, Stack, sweep


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
    def __init__(self, stack: Stack, narrator: Narrator) -> None:
        self.stack = stack
        self.n = narrator
        self.info: EmulatorInfo = stack.info  # type: ignore[assignment]

    # ------------------------------------------------------------------ set-up

    def bring_up(self, attach_mode: str) -> Cluster:
        self.stack.stop_daemons()
        controller = self.stack.start_controller(attach_mode)
        for instance in self.info.instances:
            self.stack.start_node(instance, attach_mode)
        self.stack.wait_ready()
        cluster = Cluster(controller, attach_mode=attach_mode, on_event=self.event)
        for instance in self.info.instances:
            plugin = self.stack.plugins[f"node-{instance.id}"]
            cluster.register_node(plugin, self.stack.kubelet_dir(instance.id))
        self.show_nodes(cluster)
        return cluster

    def event(self, text: str) -> None:
        self.n.say(f"event: {text}")

    def show_nodes(self, cluster: Cluster) -> None:
        self.n.command(f"kubectl get nodes -L {K8S_ZONE_KEY}")
        rows = [
            [n.name, "Ready" if n.ready else "NotReady", n.zone, str(n.max_volumes)]
            for n in sorted(cluster.nodes.values(), key=lambda n: (n.zone, n.name))
        ]
        self.n.say(format_table(["NAME", "STATUS", "ZONE", "MAX-VOLUMES"], rows))

    def show_claims(self, cluster: Cluster, *names: str) -> None:
        self.n.command("kubectl get pvc " + " ".join(names))
        rows = []
        for name in names:
            claim = cluster.claims[name]
            pv = cluster.volumes.get(claim.volume_name)
            rows.append(
                [
                    name,
                    claim.phase,
                    claim.volume_name,
                    human_size(pv.capacity_bytes) if pv else "",
                    "RWO" if pv or claim.phase == "Pending" else "",
                    claim.storage_class,
                ]
            )
        self.n.say(
            format_table(
                ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS"], rows
            )
        )

    def show_volume(self, pv: PersistentVolume) -> None:
        self.n.command(f"kubectl get pv {pv.name} -o custom-columns=...")
        affinity = ", ".join(f"{k} in [{','.join(v)}]" for k, v in pv.node_affinity or [])
        self.n.say(
            format_table(
                ["NAME", "CAPACITY", "VOLUMEHANDLE", "NODE-AFFINITY"],
                [[pv.name, human_size(pv.capacity_bytes), pv.volume_handle, affinity or "-"]],
            )
        )

    def show_pod(self, pod: Pod, cluster: Cluster) -> None:
        self.n.command(f"kubectl get pod {pod.name} -o wide")
        node = cluster.nodes.get(pod.node)
        self.n.say(
            format_table(
                ["NAME", "STATUS", "NODE", "ZONE", "REASON"],
                [
                    [
                        pod.name,
                        pod.phase,
                        pod.node or "<none>",
                        node.zone if node else "",
                        pod.reason,
                    ]
                ],
            )
        )

    def operator_cloud(self) -> EcsCloud:
        credentials = StaticProvider(
            Credentials(self.info.access_key_id, self.info.access_key_secret, source="demo")
        )
        return EcsCloud(self.info.region, credentials, endpoint=self.info.ecs_endpoint)

    def emulator_disk_zone(self, disk_id: str) -> str:
        for disk in self.info.admin("GET", "disks")["disks"]:
            if disk["id"] == disk_id:
                return str(disk["zone"])
        return ""

    def run_pod(self, cluster: Cluster, pod: Pod, **schedule: Callable[[Node], bool]) -> Path:
        node = cluster.schedule(pod, **schedule)
        target = cluster.start_pod(pod)
        self.n.say(f"pod {pod.name} is Running on {node.name} in {node.zone}")
        return target

    # ------------------------------------------------------------------ 1: static

    def static_way(self, cluster: Cluster) -> None:
        self.n.step("1. The static way: a disk created by an operator, a PV with zone labels")
        zone, other_zone = self.info.zones[0], self.info.zones[1]
        cloud = self.operator_cloud()
        self.n.command(f"aliyun ecs CreateDisk --ZoneId {zone} --DiskCategory cloud_ssd --Size 20")
        disk_id = cloud.create_disk(
            DiskRequest(
                zone=zone,
                category="cloud_ssd",
                size_gib=20,
                client_token="demo-static-disk",  # noqa: S106
            )
        )
        deadline = time.monotonic() + 60
        while True:
            disks = cloud.describe_disks([disk_id])
            if disks and disks[0].status == AVAILABLE:
                break
            if time.monotonic() > deadline:
                raise StoryFailed(f"disk {disk_id} never became Available")
            time.sleep(0.1)
        self.n.say(f'{{"DiskId": "{disk_id}"}}')
        pv = PersistentVolume(
            name="static-pv",
            volume_handle=disk_id,
            capacity_bytes=20 * GIB,
            labels=zone_label_pairs(zone, self.info.region),
            node_affinity=[(K8S_ZONE_KEY, [zone])],
        )
        claim = PersistentVolumeClaim(name="static-pvc", storage_class="", request_bytes=20 * GIB)
        self.n.command("kubectl apply -f deploy/examples/static-pv.yaml")
        cluster.add_static_volume(pv, claim)
        self.show_volume(pv)

        calls_before = self.info.calls()
        wrong = Pod(name="static-wrong-zone", claim=claim.name,
                    node_selector={K8S_ZONE_KEY: other_zone})  # fmt: skip
        self.n.command(f"kubectl run {wrong.name} (nodeSelector zone={other_zone})")
        try:
            cluster.schedule(wrong)
            refused = False
        except SchedulingError:
            refused = True
        cluster.pods.pop(wrong.name, None)
        self.show_pod(wrong, cluster)
        calls_after = self.info.calls()
        self.n.check(
            f"a pod in {other_zone} is refused by scheduling", refused and wrong.phase == "Pending"
        )
        self.n.check(
            "no attach was even tried for it",
            calls_after.get("AttachDisk", 0) == calls_before.get("AttachDisk", 0),
        )

        right = Pod(name="static-right-zone", claim=claim.name,
                    node_selector={K8S_ZONE_KEY: zone})  # fmt: skip
        self.n.command(f"kubectl run {right.name} (nodeSelector zone={zone})")
        target = self.run_pod(cluster, right)
        self.show_pod(right, cluster)
        write_text(target / "hello", "from the static way\n")
        self.n.check(
            f"the pod in {zone} mounts the disk and writes to it",
            read_text(target / "hello") == "from the static way\n",
        )
        self.n.command(f"kubectl delete pod {right.name}")
        cluster.delete_pod(right.name)

    # ------------------------------------------------------------------ 2 and 3: topology

    def topology_way(self, cluster: Cluster, *, claim_name: str = "disk-pvc") -> None:
        self.n.step(
            "2. The topology-aware way: StorageClass alicloud-disk-aware, WaitForFirstConsumer"
        )
        cluster.add_class(
            StorageClass(
                name="alicloud-disk-aware",
                parameters={"type": "cloud_ssd"},
                binding_mode="WaitForFirstConsumer",
            )
        )
        creates_before = self.info.calls().get("CreateDisk", 0)
        self.n.command("kubectl create -f -  # PVC disk-pvc, from deploy/examples/dynamic.yaml")
        cluster.create_claim(
            PersistentVolumeClaim(
                name=claim_name, storage_class="alicloud-disk-aware", request_bytes=20 * GIB
            )
        )
        self.show_claims(cluster, claim_name)
        self.n.check(
            "the claim stays Pending without a pod", cluster.claims[claim_name].phase == "Pending"
        )
        self.n.check(
            "no disk was created before the pod was placed",
            self.info.calls().get("CreateDisk", 0) == creates_before,
        )

        pod = Pod(name="nginx-disk-1", claim=claim_name)
        self.n.command("kubectl create -f -  # Deployment nginx-disk, from dynamic.yaml")
        # The scheduler picks a node; prefer another zone than the controller's own, so the
        # choice visibly comes from the pod's placement.
        pod_zone = self.info.zones[1]
        node = cluster.schedule(pod, prefer=lambda n: n.zone == pod_zone)
        claim = cluster.claims[claim_name]
        pv = cluster.volume_of(pod)
        self.n.say(f"the scheduler placed {pod.name} on {node.name} ({node.zone})")
        self.show_claims(cluster, claim_name)
        self.show_volume(pv)
        self.n.check("the claim is Bound once the pod is placed", claim.phase == "Bound")
        self.n.check(
            "the claim carries volume.kubernetes.io/selected-node",
            claim.annotations.get(SELECTED_NODE) == node.name,
        )
        self.n.check(
            f"the PV's node affinity names the pod's zone {node.zone}", pv_zone(pv) == node.zone
        )
        self.n.check(
            "the disk really lives in that zone",
            self.emulator_disk_zone(pv.volume_handle) == node.zone,
            pv.volume_handle,
        )
        self.n.check(
            "exactly one disk was created",
            self.info.calls().get("CreateDisk", 0) == creates_before + 1,
        )

        self.n.step("3. The pod writes /data/test; it is deleted and recreated; the file stays")
        target = cluster.start_pod(pod)
        self.show_pod(pod, cluster)
        self.n.command(f"kubectl exec {pod.name} -- sh -c 'echo hello > /data/test'")
        write_text(target / "test", "hello\n")
        first_node = node.name
        self.n.command(f"kubectl delete pod {pod.name}")
        cluster.delete_pod(pod.name)
        again = Pod(name="nginx-disk-2", claim=claim_name)
        node2 = cluster.schedule(again, prefer=lambda n: n.name != first_node)
        target2 = cluster.start_pod(again)
        self.show_pod(again, cluster)
        self.n.check(
            "the new pod runs on another node of the same zone",
            node2.name != first_node and node2.zone == node.zone,
            f"{first_node} -> {node2.name}",
        )
        self.n.command(f"kubectl exec {again.name} -- ls /data")
        listing = sorted(p.name for p in target2.iterdir())
        self.n.say("  ".join(listing))
        self.n.check("ls /data shows lost+found and test", listing == ["lost+found", "test"])
        self.n.command(f"kubectl exec {again.name} -- cat /data/test")
        content = read_text(target2 / "test")
        self.n.say(content.rstrip())
        self.n.check("the file written by the first pod is still there", content == "hello\n")
        cluster.delete_pod(again.name)
        self.n.command(f"kubectl delete pvc {claim_name}")
        disk_id = pv.volume_handle
        cluster.delete_claim(claim_name)
        self.n.check("deleting the claim deletes its disk", self.emulator_disk_zone(disk_id) == "")

    # ------------------------------------------------------------------ 4: controller mode

    def controller_mode(self, cluster: Cluster) -> None:
        self.n.step("4. Controller attach mode, and a node that fails")
        cluster.add_class(
            StorageClass(name="alicloud-disk-aware", parameters={"type": "cloud_ssd"})
        )
        cluster.create_claim(
            PersistentVolumeClaim(
                name="disk-pvc-ha", storage_class="alicloud-disk-aware", request_bytes=20 * GIB
            )
        )
        pod = Pod(name="nginx-disk-ha-1", claim="disk-pvc-ha")
        zone = self.info.zones[1]
        node = cluster.schedule(pod, prefer=lambda n: n.zone == zone)
        target = cluster.start_pod(pod)
        self.show_pod(pod, cluster)
        write_text(target / "test", "survives a node failure\n")
        pv = cluster.volume_of(pod)
        self.n.check(
            "ControllerPublishVolume attached the disk before the node staged it",
            (pv.volume_handle, node.name) in cluster.attachments,
        )

        self.n.say(f"instance {node.name} stops (its mounts vanish with it)")
        self.stack.stop_daemon(f"node-{node.name}")
        sweep(node.kubelet_dir)
        self.info.admin("POST", f"instances/{node.name}/stop")
        node.ready = False
        self.show_nodes(cluster)
        cluster.delete_pod(pod.name, node_lost=True)

        moved = Pod(name="nginx-disk-ha-2", claim="disk-pvc-ha")
        node2 = cluster.schedule(moved)
        target2 = cluster.start_pod(moved)
        self.show_pod(moved, cluster)
        self.n.check(
            "the pod moved to another node of the same zone",
            node2.name != node.name and node2.zone == node.zone,
        )
        content = read_text(target2 / "test")
        self.n.check(
            "the disk followed it without data loss", content == "survives a node failure\n"
        )
        cluster.delete_pod(moved.name)
        cluster.delete_claim("disk-pvc-ha")
        self.info.admin("POST", f"instances/{node.name}/start")


DESCRIPTION = "Play the topology-aware story end to end on the built-in emulator."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir", type=Path, help="where state, sockets and logs go (default: a temp dir)"
    )
    parser.add_argument(
        "--latency-scale",
        type=float,
        default=0.2,
        help="emulated ECS latencies as a fraction of realistic seconds",
    )
    parser.add_argument("--keep", action="store_true", help="keep the state dir afterwards")


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="csi-disk-demo-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    narrator = Narrator(out)
    stack = Stack(state_dir, latency_scale=args.latency_scale)

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    ok = False
    try:
        narrator.say(f"csi-disk demo: driver {DRIVER_NAME}, state in {state_dir}")
        info = stack.start_emulator(zones=3, instances_per_zone=2)
        narrator.say(f"emulated ECS at {info.ecs_endpoint}, region {info.region}, zones "
                     + ", ".join(info.zones))  # fmt: skip
        story = Story(stack, narrator)
        cluster = story.bring_up("node")
        story.static_way(cluster)
        story.topology_way(cluster)
        cluster = story.bring_up("controller")
        story.controller_mode(cluster)
        ok = True
    except StoryFailed as err:
        narrator.say(f"\nthe story stopped: {err}")
    except KeyboardInterrupt:
        narrator.say("\ninterrupted: cleaning up")
    except Exception as err:
        narrator.say(f"\nthe story broke: {type(err).__name__}: {err}")
    finally:
        stack.close()
    if ok and not narrator.failed:
        narrator.say(
            f"\ncsi-disk demo: all {len(narrator.passed)} checks passed."
            "\nNext: `csi-disk serve --help` for every flag, deploy/kubernetes/ for the"
            " manifests, docs/ for the guides."
        )
        if not args.keep and args.state_dir is None:
            shutil.rmtree(state_dir, ignore_errors=True)
        return 0
    narrator.say(f"csi-disk demo: FAILED; logs are in {state_dir / 'logs'}")
    return 1


def main(argv: Sequence[str] | None = None, prog: str = "csi-disk-demo") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
