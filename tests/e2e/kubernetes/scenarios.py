"""The scenarios both attach modes play; each test module calls them on its own cluster."""

from __future__ import annotations

import copy
import time
from typing import Any

from csi_disk_demo.kube.cluster import Cluster
from csi_disk_demo.kube.objects import PROVISIONER_LEASE
from csi_disk_demo.kube.objects import static_pv as static_pv_objects
from tests.e2e.kubernetes.story import (
    OUT_OF_SERVICE,
    SELECTED_NODE,
    ZONE,
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
    node_ready,
    operator_disk,
    provisioning_failures,
    refused,
    running_pod,
    seed_deployment,
)


def static_pv(cluster: Cluster) -> None:
    """The seed's static PV, its zone labels and node affinity pointing at an operator's disk:
    the real scheduler leaves a pod pinned to another zone Pending and places one in the
    disk's zone, where the disk is mounted."""
    zone, other_zone = cluster.info.zones[0], cluster.info.zones[1]
    disk_id = operator_disk(cluster, zone, f"static-{cluster.attach_mode}")
    pv, pvc = static_pv_objects(disk_id, zone, cluster.info.region)
    deployment = seed_deployment(claim_name=pvc["metadata"]["name"], app="static")
    wrong = copy.deepcopy(deployment)
    wrong["metadata"]["name"] = "static-wrong-zone"
    wrong["spec"]["selector"]["matchLabels"]["app"] = "static-wrong-zone"
    wrong["spec"]["template"]["metadata"]["labels"]["app"] = "static-wrong-zone"
    wrong["spec"]["template"]["spec"]["nodeSelector"] = {ZONE: other_zone}
    attaches = calls(cluster, "AttachDisk")
    apply(cluster, pv, pvc, wrong)
    try:
        bound_volume(cluster, pvc["metadata"]["name"])
        pending = cluster.wait(
            lambda: [p for p in cluster.pods(selector="app=static-wrong-zone") if refused(p)],
            "the wrong-zone pod refused by the scheduler",
        )
        message = pending[0]["status"]["conditions"][0]["message"]
        assert pending[0]["status"]["phase"] == "Pending"
        assert "didn't match PersistentVolume's node affinity" in message, message
        assert calls(cluster, "AttachDisk") == attaches, "an attach was tried for it"
        delete(cluster, wrong)

        apply(cluster, deployment)
        pod = running_pod(cluster, "static")
        assert cluster.zone_of(pod["spec"]["nodeName"]) == zone
        cluster.exec(pod, "sh", "-c", "echo 'from the static way' > /data/hello")
        assert cluster.exec(pod, "cat", "/data/hello") == "from the static way\n"
        assert attached_to(cluster, disk_id) == {pod["spec"]["nodeName"]}
    finally:
        delete(cluster, wrong, deployment, pvc, pv)
    assert emulator_disks(cluster)[disk_id]["status"] == "Available", "Retain keeps the disk"


def labels_only_pv(cluster: Cluster) -> None:
    """A PV with only the deprecated zone labels (no node affinity), as older installs made
    them: the scheduler's VolumeZone plugin matches those labels against the nodes'
    topology.kubernetes.io labels (it translates the beta keys), so the pod still lands in
    the disk's zone."""
    zone = cluster.info.zones[1]
    disk_id = operator_disk(cluster, zone, f"labels-only-{cluster.attach_mode}")
    objects = example("static-pv.yaml")
    pv, pvc = by_kind(objects, "PersistentVolume"), by_kind(objects, "PersistentVolumeClaim")
    pv["metadata"]["name"] = pvc["spec"]["volumeName"] = "labels-only-pv"
    pvc["metadata"]["name"] = "labels-only-pvc"
    pv["spec"]["csi"]["volumeHandle"] = disk_id
    pv["metadata"]["labels"]["failure-domain.beta.kubernetes.io/zone"] = zone
    pv["metadata"]["labels"]["failure-domain.beta.kubernetes.io/region"] = cluster.info.region
    del pv["spec"]["nodeAffinity"]
    deployment = seed_deployment(claim_name="labels-only-pvc", app="labels-only")
    apply(cluster, pv, pvc, deployment)
    try:
        pod = running_pod(cluster, "labels-only")
        assert cluster.zone_of(pod["spec"]["nodeName"]) == zone
        assert cluster.exec(pod, "ls", "/data") == "lost+found\n"
    finally:
        delete(cluster, deployment, pvc, pv)


def topology_aware(cluster: Cluster) -> None:
    """WaitForFirstConsumer: Pending with no CreateDisk until the pod is scheduled; then
    Bound in the pod's zone; /data/test survives the pod's deletion and recreation by the
    ReplicaSet controller on another node of the zone."""
    objects = example("dynamic.yaml")
    pvc, deployment = by_kind(objects, "PersistentVolumeClaim"), by_kind(objects, "Deployment")
    creates = calls(cluster, "CreateDisk")
    apply(cluster, pvc)
    try:
        time.sleep(3)  # the binder and provisioner have had their chance to act
        assert claim(cluster, "disk-pvc")["status"]["phase"] == "Pending"
        assert any("WaitForFirstConsumer" in e for e in events_about(cluster, "disk-pvc"))
        assert calls(cluster, "CreateDisk") == creates, "a disk was made before the pod"

        apply(cluster, deployment)
        pod = running_pod(cluster, "nginx-disk")
        node = pod["spec"]["nodeName"]
        zone = cluster.zone_of(node)
        found = claim(cluster, "disk-pvc")
        assert found["metadata"]["annotations"][SELECTED_NODE] == node
        described = cluster.kubectl("describe", "pvc", "disk-pvc").stdout
        assert f"{SELECTED_NODE}: {node}" in described
        pv = bound_volume(cluster, "disk-pvc")
        assert affinity_zone(pv) == zone
        disk = emulator_disks(cluster)[pv["spec"]["csi"]["volumeHandle"]]
        assert disk["zone"] == zone and disk["category"] == "cloud_ssd"

        cluster.exec(pod, "sh", "-c", "echo hello > /data/test")
        with cordoned(cluster, [node]):
            cluster.kubectl("delete", "pod", pod["metadata"]["name"], "--wait=false")
            moved = running_pod(cluster, "nginx-disk", other_than=pod["metadata"]["name"])
        second = moved["spec"]["nodeName"]
        assert second != node and cluster.zone_of(second) == zone
        assert cluster.exec(moved, "ls", "/data") == "lost+found\ntest\n"
        assert cluster.exec(moved, "cat", "/data/test") == "hello\n"
        assert attached_to(cluster, disk["id"]) == {second}
        if cluster.attach_mode == "controller":
            cluster.wait(
                lambda: attachments(cluster, disk["id"]) == {second: True},
                "one VolumeAttachment, to the second node",
            )
    finally:
        delete(cluster, deployment, pvc)
    assert disk["id"] not in emulator_disks(cluster), "the Delete reclaim policy deletes the disk"


def category_not_sold(cluster: Cluster) -> None:
    """cloud_ssd is not sold in the last zone, whose NVMe nodes could not attach it anyway:
    every node there has no capacity for the class (csi-provisioner's CSIStorageCapacity from
    GetCapacity). With the other zones' nodes cordoned the scheduler keeps the pod Pending,
    saying so, and no CreateVolume is tried; uncordoned, the pod runs in another zone."""
    last = cluster.info.zones[-1]
    others = [i.id for i in cluster.info.instances if i.zone != last]
    pvc = claim_of("no-ssd-pvc", "alicloud-disk-aware")
    deployment = seed_deployment("no-ssd-pvc", "no-ssd")
    creates = calls(cluster, "CreateDisk")
    try:
        for instance in cluster.info.instances_in(last):
            assert capacity_on(cluster, "alicloud-disk-aware", instance.id) == "0"
        with cordoned(cluster, others):
            apply(cluster, pvc, deployment)
            pending = cluster.wait(
                lambda: [p for p in cluster.pods(selector="app=no-ssd") if refused(p)],
                "the pod refused by the scheduler",
            )
            message = pending[0]["status"]["conditions"][0]["message"]
            assert "did not have enough free storage" in message, message
            assert SELECTED_NODE not in claim(cluster, "no-ssd-pvc")["metadata"].get(
                "annotations", {}
            )
        pod = running_pod(cluster, "no-ssd")
        zone = cluster.zone_of(pod["spec"]["nodeName"])
        assert zone != last
        pv = bound_volume(cluster, "no-ssd-pvc")
        assert affinity_zone(pv) == zone
        assert emulator_disks(cluster)[pv["spec"]["csi"]["volumeHandle"]]["zone"] == zone
        assert calls(cluster, "CreateDisk") == creates + 1, "a CreateDisk failed or was repeated"
        assert not provisioning_failures(cluster, "no-ssd-pvc")
    finally:
        delete(cluster, deployment, pvc)


def online_resize(cluster: Cluster) -> None:
    """The seed's claim grown to 40Gi while its pod runs: csi-resizer expands the disk, the
    node agent has the node plugin grow the filesystem as kubelet would, the pod sees the new
    size. The claim's class is the seed's with xfs: ext4 grows online only with
    CAP_SYS_RESOURCE, which the machines this runs on withhold even from root (the driver
    answers FAILED_PRECONDITION there, and kubelet would retry until the next mount)."""
    aware = cluster.get("/apis/storage.k8s.io/v1/storageclasses/alicloud-disk-aware")
    xfs = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "alicloud-disk-aware-xfs"},
        "provisioner": aware["provisioner"],
        "parameters": {**aware["parameters"], "csi.storage.k8s.io/fstype": "xfs"},
        "reclaimPolicy": aware["reclaimPolicy"],
        "allowVolumeExpansion": aware["allowVolumeExpansion"],
        "volumeBindingMode": aware["volumeBindingMode"],
    }
    pvc, deployment = by_kind(example("dynamic.yaml"), "PersistentVolumeClaim"), seed_deployment()
    grown = by_kind(example("resize.yaml"), "PersistentVolumeClaim")
    for claim_object in (pvc, grown):
        claim_object["spec"]["storageClassName"] = xfs["metadata"]["name"]
    apply(cluster, xfs, pvc, deployment)
    try:
        pod = running_pod(cluster, "nginx-disk")
        assert 19 <= df_gib(cluster, pod) <= 20
        cluster.exec(pod, "sh", "-c", "echo 'before the resize' > /data/test")
        apply(cluster, grown)
        cluster.wait(
            lambda: (
                claim(cluster, "disk-pvc")["status"].get("capacity", {}).get("storage") == "40Gi"
            ),
            "the claim's capacity at 40Gi",
        )
        pv = bound_volume(cluster, "disk-pvc")
        assert pv["spec"]["capacity"]["storage"] == "40Gi"
        assert emulator_disks(cluster)[pv["spec"]["csi"]["volumeHandle"]]["size"] == 40
        assert 39 <= df_gib(cluster, pod) <= 40
        assert cluster.exec(pod, "cat", "/data/test") == "before the resize\n"
        assert claim(cluster, "disk-pvc")["status"].get("allocatedResourceStatuses") is None
    finally:
        delete(cluster, deployment, pvc, xfs)


def df_gib(cluster: Cluster, pod: dict[str, Any]) -> float:
    out = cluster.exec(pod, "df", "-B1", "--output=size", "/data").split()
    return int(out[-1]) / 2**30


def snapshot_restore(cluster: Cluster) -> None:
    """A VolumeSnapshot of the seed's claim through csi-snapshotter and snapshot-controller,
    then a claim restored from it, mounted by a second Deployment with the same file."""
    objects = example("dynamic.yaml")
    pvc, deployment = by_kind(objects, "PersistentVolumeClaim"), by_kind(objects, "Deployment")
    restore = example("snapshot-restore.yaml")
    apply(cluster, pvc, deployment)
    try:
        pod = running_pod(cluster, "nginx-disk")
        cluster.exec(pod, "sh", "-c", "echo 'before the snapshot' > /data/test; sync")
        apply(cluster, *restore)
        path = (
            "/apis/snapshot.storage.k8s.io/v1/namespaces/default/volumesnapshots/disk-pvc-snapshot"
        )
        cluster.wait(
            lambda: (cluster.admin.find(path) or {}).get("status", {}).get("readyToUse"),
            "the VolumeSnapshot ready to use",
        )
        restored = running_pod(cluster, "nginx-disk-restored", timeout=120)
        assert cluster.exec(restored, "cat", "/data/test") == "before the snapshot\n"
        snapshots = cluster.info.admin("GET", "snapshots")["snapshots"]
        assert len(snapshots) >= 1
    finally:
        delete(cluster, *reversed(restore))
        delete(cluster, deployment, pvc)
    remaining = [s for s in cluster.info.admin("GET", "snapshots")["snapshots"]
                 if s.get("status") != "Deleted"]  # fmt: skip
    assert not remaining, f"snapshots left after deletion: {remaining}"


def modify_volume(cluster: Cluster) -> None:
    """A claim moved from VolumeAttributesClass alicloud-disk-pl1 to alicloud-disk-pl0: the
    resizer's ControllerModifyVolume changes the ESSD's performance level."""
    objects = example("modify.yaml")
    claim_object = by_kind(objects, "PersistentVolumeClaim")
    apply(cluster, *objects)
    try:
        pv = bound_volume(cluster, "essd-pvc")
        disk_id = pv["spec"]["csi"]["volumeHandle"]
        assert emulator_disks(cluster)[disk_id]["performance_level"] == "PL1"
        cluster.kubectl(
            "patch", "pvc", "essd-pvc", "--type=merge",
            "-p", '{"spec":{"volumeAttributesClassName":"alicloud-disk-pl0"}}',
        )  # fmt: skip
        cluster.wait(
            lambda: (
                claim(cluster, "essd-pvc")["status"].get("currentVolumeAttributesClassName")
                == "alicloud-disk-pl0"
            ),
            "the claim's current class alicloud-disk-pl0",
        )
        assert emulator_disks(cluster)[disk_id]["performance_level"] == "PL0"
    finally:
        delete(cluster, claim_object)
        delete(cluster, *[o for o in objects if o is not claim_object])


def no_refusals(cluster: Cluster) -> None:
    from tests.e2e.kubernetes.story import sidecar_refusals

    refused = sidecar_refusals(cluster)
    assert not refused, "the apiserver refused a sidecar:\n" + "\n".join(refused[:20])


def node_failure(cluster: Cluster) -> None:
    """Controller attach mode: the instance under a pod stops. The node lifecycle controller
    marks the node NotReady; the operator declares it out of service with the non-graceful
    shutdown taint; the real controllers evict and force-delete the pod, force-detach the disk,
    and the ReplicaSet's new pod runs on the other node of the zone with the data."""
    pvc, deployment = by_kind(example("dynamic.yaml"), "PersistentVolumeClaim"), seed_deployment()
    apply(cluster, pvc, deployment)
    node = ""
    try:
        pod = running_pod(cluster, "nginx-disk")
        node = pod["spec"]["nodeName"]
        zone = cluster.zone_of(node)
        cluster.exec(pod, "sh", "-c", "echo survives > /data/test")
        disk_id = bound_volume(cluster, "disk-pvc")["spec"]["csi"]["volumeHandle"]
        assert attached_to(cluster, disk_id) == {node}

        cluster.stop_node(node)
        cluster.wait(lambda: node_ready(cluster, node) != "True", f"{node} NotReady")
        cluster.kubectl("taint", "nodes", node, f"{OUT_OF_SERVICE}=nodeshutdown:NoExecute")
        moved = running_pod(cluster, "nginx-disk", other_than=pod["metadata"]["name"], timeout=120)
        second = moved["spec"]["nodeName"]
        assert second != node and cluster.zone_of(second) == zone
        assert cluster.exec(moved, "cat", "/data/test") == "survives\n"
        assert attached_to(cluster, disk_id) == {second}
        cluster.wait(
            lambda: attachments(cluster, disk_id) == {second: True},
            "one VolumeAttachment, to the second node",
        )
    finally:
        delete(cluster, deployment, pvc)
        if node:
            cluster.restart_node(node)
            cluster.kubectl("taint", "nodes", node, f"{OUT_OF_SERVICE}-", check=False)
    cluster.wait(lambda: node_ready(cluster, node) == "True", f"{node} Ready again")


def leader_failover(cluster: Cluster, claims: int = 8) -> float:
    """Two controller replicas; the one whose csi-provisioner leads loses every process while
    a burst of claims is being provisioned (ECS throttles the account, so the burst takes a
    while). The other replica's sidecars take the Leases over and finish every claim, with no
    disk made twice (CreateDisk's ClientToken) and no claim stuck. Returns the takeover time."""
    assert len(cluster.controllers) == 2, "the StatefulSet asks for two replicas"
    leader = cluster.get(PROVISIONER_LEASE)["spec"]["holderIdentity"]
    assert leader in cluster.controllers
    (other,) = set(cluster.controllers) - {leader}
    duration = cluster.get(PROVISIONER_LEASE)["spec"]["leaseDurationSeconds"]
    before = set(emulator_disks(cluster))
    names = [f"burst-{i}" for i in range(claims)]
    pvcs = []
    for name in names:
        pvc = by_kind(example("dynamic.yaml"), "PersistentVolumeClaim")
        pvc["metadata"]["name"] = name
        pvc["spec"]["storageClassName"] = "alicloud-disk-essd"  # Immediate binding
        pvcs.append(pvc)
    cluster.info.admin(
        "POST", "throttle", {"access_key_id": cluster.info.access_key_id, "per_second": 3}
    )
    try:
        apply(cluster, *pvcs)
        cluster.wait(lambda: calls(cluster, "CreateDisk") > 0 and bound_count(cluster, names) >= 1,
                     "the first claims of the burst bound", timeout=60, interval=0.1)  # fmt: skip
        assert bound_count(cluster, names) < claims, "the burst ended before the failure"
        killed = time.monotonic()
        cluster.controllers[leader].kill()
        cluster.wait(
            lambda: cluster.get(PROVISIONER_LEASE)["spec"]["holderIdentity"] == other,
            "the other replica holding the provisioner's Lease", timeout=60, interval=0.2,
        )  # fmt: skip
        takeover = time.monotonic() - killed
        cluster.wait(lambda: bound_count(cluster, names) == claims, "every claim Bound", 120)
        made = set(emulator_disks(cluster)) - before
        handles = {bound_volume(cluster, n)["spec"]["csi"]["volumeHandle"] for n in names}
        assert made == handles, f"disks made {sorted(made)} for volumes {sorted(handles)}"
        # The standby acquires once the Lease is leaseDurationSeconds old; client-go retries
        # every --leader-election-retry-period (5 s, the sidecars' default) plus up to 120 %
        # jitter, and the last renewal may have come just before the kill.
        bound = duration + 5 * 2.2 + 3
        assert takeover <= bound, f"takeover took {takeover:.1f}s, over {bound:.0f}s"
    finally:
        cluster.info.admin("POST", "throttle", {"access_key_id": cluster.info.access_key_id})
        delete(cluster, *pvcs)
        ordinal = int(leader.rsplit("-", 1)[1])
        cluster.start_controller(ordinal)
    return takeover


def bound_count(cluster: Cluster, names: list[str]) -> int:
    listed = cluster.admin.get("/api/v1/namespaces/default/persistentvolumeclaims")["items"]
    return sum(
        1 for c in listed
        if c["metadata"]["name"] in names and c["status"].get("phase") == "Bound"
    )  # fmt: skip
