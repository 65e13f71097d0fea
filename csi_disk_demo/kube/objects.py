"""The seed's objects on the real cluster: deploy/examples read as objects, applied and deleted
with kubectl, and what the API and the emulator say about them. Shared by the demo and the
tests, so both play the story the same way."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml

from csi_disk.cloud.credentials import Credentials, StaticProvider
from csi_disk.cloud.ecs import EcsCloud
from csi_disk.cloud.port import AVAILABLE, DiskRequest
from csi_disk_demo.kube.binaries import REPO_ROOT
from csi_disk_demo.kube.cluster import Cluster

EXAMPLES = REPO_ROOT / "deploy" / "examples"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
ZONE = "topology.kubernetes.io/zone"
DRIVER_ZONE = "topology.diskplugin.csi.alibabacloud.com/zone"
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
REGION = "topology.kubernetes.io/region"
DISK_TYPE = "node.csi.alibabacloud.com/disktype."
CAPACITIES = "/apis/storage.k8s.io/v1/namespaces/kube-system/csistoragecapacities"


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
    raise LookupError(f"no zone in {terms}")


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

    return cluster.wait(running, f"a Running pod of {app}", timeout)


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
        if time.monotonic() > deadline:
            raise TimeoutError(f"disk {disk_id} never became Available")
        time.sleep(0.1)
    return disk_id


def seed_deployment(claim_name: str = "disk-pvc", app: str = "nginx-disk") -> dict[str, Any]:
    deployment = copy.deepcopy(by_kind(example("dynamic.yaml"), "Deployment"))
    deployment["metadata"]["name"] = app
    deployment["spec"]["selector"]["matchLabels"]["app"] = app
    deployment["spec"]["template"]["metadata"]["labels"]["app"] = app
    deployment["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] = (
        claim_name
    )
    return deployment


def refused(pod: dict[str, Any]) -> bool:
    return pod["status"].get("conditions", [{}])[0].get("reason") == "Unschedulable"


def attachments(cluster: Cluster, disk_id: str) -> dict[str, bool]:
    """node -> attached, for the VolumeAttachments of a disk."""
    listed = cluster.admin.get("/apis/storage.k8s.io/v1/volumeattachments")["items"]
    return {
        a["spec"]["nodeName"]: bool(a.get("status", {}).get("attached"))
        for a in listed
        if a["spec"]["source"].get("persistentVolumeName")
        and volume(cluster, a["spec"]["source"]["persistentVolumeName"])["spec"]["csi"][
            "volumeHandle"
        ]
        == disk_id
    }


def node_ready(cluster: Cluster, node: str) -> str:
    found = cluster.get(f"/api/v1/nodes/{node}") or {}
    conditions = found.get("status", {}).get("conditions", [])
    return next((c["status"] for c in conditions if c["type"] == "Ready"), "")


PROVISIONER_LEASE = (
    "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/diskplugin-csi-alibabacloud-com"
)


def dump(items: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(items, sort_keys=False)


def static_pv(disk_id: str, zone: str, region: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """deploy/examples/static-pv.yaml (PV and claim) filled in for one disk and its zone."""
    items = example("static-pv.yaml")
    pv, pvc = by_kind(items, "PersistentVolume"), by_kind(items, "PersistentVolumeClaim")
    pv["spec"]["csi"]["volumeHandle"] = disk_id
    pv["metadata"]["labels"]["failure-domain.beta.kubernetes.io/zone"] = zone
    pv["metadata"]["labels"]["failure-domain.beta.kubernetes.io/region"] = region
    for term in pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]:
        for expression in term["matchExpressions"]:
            if expression["key"] == ZONE:
                expression["values"] = [zone]
    return pv, pvc


def storage_class(
    name: str, category: str, binding: str = "WaitForFirstConsumer"
) -> dict[str, Any]:
    """The seed's topology-aware class with another ``type``."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "diskplugin.csi.alibabacloud.com",
        "parameters": {"type": category},
        "reclaimPolicy": "Delete",
        "allowVolumeExpansion": True,
        "volumeBindingMode": binding,
    }


def claim_of(name: str, class_name: str) -> dict[str, Any]:
    """The seed's claim (20Gi, ReadWriteOnce) under another name and class."""
    pvc = copy.deepcopy(by_kind(example("dynamic.yaml"), "PersistentVolumeClaim"))
    pvc["metadata"]["name"] = name
    pvc["spec"]["storageClassName"] = class_name
    return pvc


def affinity(pv: dict[str, Any]) -> dict[str, list[str]]:
    """key -> values of the PV's required node affinity (its first term)."""
    term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]
    return {e["key"]: list(e["values"]) for e in term.get("matchExpressions", [])}


def node_labels(cluster: Cluster, node: str) -> dict[str, str]:
    return dict(cluster.admin.get(f"/api/v1/nodes/{node}")["metadata"].get("labels", {}))


def capacity_on(cluster: Cluster, class_name: str, node: str) -> str | None:
    """The capacity csi-provisioner published for ``class_name`` on ``node``'s segment; None
    while there is no such CSIStorageCapacity (the scheduler then counts none)."""
    labels = node_labels(cluster, node)
    for item in cluster.admin.get(CAPACITIES)["items"]:
        selector = (item.get("nodeTopology") or {}).get("matchLabels", {})
        if item["storageClassName"] == class_name and all(
            labels.get(k) == v for k, v in selector.items()
        ):
            return str(item.get("capacity", "0"))
    return None


def provisioning_failures(cluster: Cluster, claim_name: str) -> list[str]:
    """What csi-provisioner reported failing for a claim (a CreateVolume that failed)."""
    return [e for e in events_about(cluster, claim_name) if e.startswith("ProvisioningFailed")]
