"""Topology beyond the zone on the real cluster: the nodes' instance families, regional ESSD
and stock, as the scheduler sees them through the nodes' disktype labels and csi-provisioner's
CSIStorageCapacity objects (docs/topology.md). The cluster's layout (csi_disk_demo.kube.cluster
.LAYOUT): g7 nodes in the first two zones, one u1 node (the only family here attaching ESSD
Entry), g8i nodes (regional ESSD) in the first and last zones."""

from __future__ import annotations

from typing import Any

from csi_disk_demo.kube.cluster import Cluster
from tests.e2e.kubernetes.story import (
    DISK_TYPE,
    REGION,
    affinity,
    apply,
    attached_to,
    bound_volume,
    calls,
    capacity_on,
    claim_of,
    cordoned,
    delete,
    emulator_disks,
    node_labels,
    provisioning_failures,
    running_pod,
    seed_deployment,
    storage_class,
)

ENTRY = "cloud_essd_entry"
REGIONAL = "cloud_regional_disk_auto"


def instance_type(cluster: Cluster, node: str) -> str:
    return cluster.instance(node).instance_type


def family_placement(cluster: Cluster) -> None:
    """A StorageClass of ESSD Entry, which only the u1 family attaches: only the u1 node has
    capacity for it, so the scheduler places the pod there; one CreateDisk makes the disk, and
    the PV requires the node label of its category, so the pod can only ever run where its
    disk attaches."""
    (u1,) = [i.id for i in cluster.info.instances if i.instance_type == "ecs.u1-c1m2.large"]
    assert node_labels(cluster, u1)[DISK_TYPE + ENTRY] == "available"
    sc = storage_class("alicloud-disk-entry", ENTRY)
    pvc, deployment = (
        claim_of("entry-pvc", "alicloud-disk-entry"),
        seed_deployment("entry-pvc", "entry"),
    )
    creates = calls(cluster, "CreateDisk")
    apply(cluster, sc, pvc, deployment)
    try:
        pod = running_pod(cluster, "entry", timeout=120)
        assert pod["spec"]["nodeName"] == u1
        others = [i.id for i in cluster.info.instances if i.id != u1]
        assert all(capacity_on(cluster, "alicloud-disk-entry", n) == "0" for n in others)
        pv = bound_volume(cluster, "entry-pvc")
        assert affinity(pv)[DISK_TYPE + ENTRY] == ["available"]
        disk = emulator_disks(cluster)[pv["spec"]["csi"]["volumeHandle"]]
        assert (disk["category"], disk["zone"]) == (ENTRY, cluster.zone_of(u1))
        assert calls(cluster, "CreateDisk") == creates + 1
        assert not provisioning_failures(cluster, "entry-pvc")
        cluster.exec(pod, "sh", "-c", "echo entry > /data/test")
        assert cluster.exec(pod, "cat", "/data/test") == "entry\n"
    finally:
        delete(cluster, deployment, pvc, sc)


def regional_follows_its_pod(cluster: Cluster) -> None:
    """A regional ESSD: created for the region (its PV names the region, not a zone, and the
    regional disk type), the pod on a node whose family attaches it; with every node of that
    zone cordoned, the ReplicaSet's new pod runs in another zone, with the data."""
    sc = storage_class("alicloud-disk-regional", REGIONAL)
    pvc = claim_of("regional-pvc", "alicloud-disk-regional")
    deployment = seed_deployment("regional-pvc", "regional")
    apply(cluster, sc, pvc, deployment)
    try:
        pod = running_pod(cluster, "regional", timeout=120)
        node = pod["spec"]["nodeName"]
        assert instance_type(cluster, node) == "ecs.g8i.large"
        pv = bound_volume(cluster, "regional-pvc")
        assert affinity(pv) == {REGION: [cluster.info.region], DISK_TYPE + REGIONAL: ["available"]}
        disk = emulator_disks(cluster)[pv["spec"]["csi"]["volumeHandle"]]
        assert (disk["category"], disk["zone"]) == (REGIONAL, "")
        cluster.exec(pod, "sh", "-c", "echo 'from the first zone' > /data/test")
        zone = cluster.zone_of(node)
        with cordoned(cluster, [i.id for i in cluster.info.instances_in(zone)]):
            cluster.kubectl("delete", "pod", pod["metadata"]["name"], "--wait=false")
            moved = running_pod(cluster, "regional", other_than=pod["metadata"]["name"],
                                timeout=120)  # fmt: skip
        second = moved["spec"]["nodeName"]
        assert cluster.zone_of(second) != zone
        assert instance_type(cluster, second) == "ecs.g8i.large"
        assert cluster.exec(moved, "cat", "/data/test") == "from the first zone\n"
        assert attached_to(cluster, disk["id"]) == {second}
    finally:
        delete(cluster, deployment, pvc, sc)


def out_of_stock_zone_is_skipped(cluster: Cluster) -> None:
    """The first zone runs out of cloud_auto: within a poll its nodes' capacity for the class is
    0, and a pod that may run in the first or the second zone is placed in the second, with
    one CreateDisk and no failed CreateVolume."""
    first, second = cluster.info.zones[0], cluster.info.zones[1]
    sc = storage_class("alicloud-disk-auto", "cloud_auto")
    pvc, deployment = (
        claim_of("auto-pvc", "alicloud-disk-auto"),
        seed_deployment("auto-pvc", "auto"),
    )
    deployment["spec"]["template"]["spec"]["affinity"] = zones_only(first, second)
    stock = {"zone": first, "category": "cloud_auto"}
    cluster.info.admin("POST", "stock", {**stock, "count": 0})
    try:
        apply(cluster, sc)
        cluster.wait(
            lambda: all(capacity_on(cluster, "alicloud-disk-auto", i.id) == "0"
                        for i in cluster.info.instances_in(first))
            and all(capacity_on(cluster, "alicloud-disk-auto", i.id) not in (None, "0")
                    for i in cluster.info.instances_in(second)),
            f"no capacity for cloud_auto left in {first}",
        )  # fmt: skip
        creates = calls(cluster, "CreateDisk")
        apply(cluster, pvc, deployment)
        pod = running_pod(cluster, "auto", timeout=120)
        assert cluster.zone_of(pod["spec"]["nodeName"]) == second
        pv = bound_volume(cluster, "auto-pvc")
        assert emulator_disks(cluster)[pv["spec"]["csi"]["volumeHandle"]]["zone"] == second
        assert calls(cluster, "CreateDisk") == creates + 1, "a CreateDisk was refused"
        assert not provisioning_failures(cluster, "auto-pvc")
    finally:
        delete(cluster, deployment, pvc, sc)
        cluster.info.admin("POST", "stock", stock)


def zones_only(*zones: str) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [
                        {"key": "topology.kubernetes.io/zone", "operator": "In",
                         "values": list(zones)}
                    ]}
                ]
            }
        }
    }  # fmt: skip
