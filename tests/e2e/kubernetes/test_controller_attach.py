"""The seed story on a real cluster in controller attach mode (deploy/kubernetes/controller-
attach/): the attach-detach controller makes VolumeAttachments, csi-attacher attaches through
ControllerPublishVolume, the node agent waits for them as kubelet does. Also what only this
mode shows: a node lost with its instance, and two controller replicas losing their leader."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from csi_disk_demo.kube.cluster import Cluster
from tests.e2e.kubernetes import scenarios
from tests.e2e.kubernetes.story import running_cluster

pytestmark = [pytest.mark.root, pytest.mark.kubernetes, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("kube-controller"), "controller") as c:
        yield c


def test_real_components_run(cluster: Cluster) -> None:
    """The components are the real programs, not stand-ins: each is a running process."""
    names = set()
    for pid in cluster.pids():
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            names.add(f.read().split(b"\0")[0].decode().rsplit("/", 1)[-1])
    assert {
        "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
        "csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter",
        "snapshot-controller",
    } <= names  # fmt: skip


def test_nothing_listens_beyond_loopback(cluster: Cluster) -> None:
    from tests.e2e.kubernetes.story import host_listeners

    listeners = host_listeners(set(cluster.pids()))
    assert listeners, "no listening socket found: the check would prove nothing"
    wide = [(pid, address, port) for pid, address, port in listeners if address != "127.0.0.1"]
    assert not wide, f"listening beyond loopback: {wide}"


def test_static_pv_schedules_only_in_its_zone(cluster: Cluster) -> None:
    scenarios.static_pv(cluster)


def test_topology_aware_claim_and_data_across_nodes(cluster: Cluster) -> None:
    scenarios.topology_aware(cluster)


def test_a_zone_that_does_not_sell_the_category_is_never_chosen(cluster: Cluster) -> None:
    scenarios.category_not_sold(cluster)


def test_online_resize(cluster: Cluster) -> None:
    scenarios.online_resize(cluster)


def test_snapshot_and_restore(cluster: Cluster) -> None:
    scenarios.snapshot_restore(cluster)


def test_volume_attributes_class_change(cluster: Cluster) -> None:
    scenarios.modify_volume(cluster)


def test_node_lost_with_its_instance(cluster: Cluster) -> None:
    scenarios.node_failure(cluster)


def test_leader_killed_mid_burst(cluster: Cluster) -> None:
    takeover = scenarios.leader_failover(cluster)
    print(f"provisioner lease taken over in {takeover:.1f}s")


def test_no_sidecar_was_refused(cluster: Cluster) -> None:
    scenarios.no_refusals(cluster)
