"""The seed story on a real cluster in node attach mode (deploy/kubernetes/): no
VolumeAttachment, the node plugin attaches its own disks at NodeStageVolume."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from csi_disk_demo.kube.cluster import Cluster
from tests.e2e.kubernetes import placement, scenarios
from tests.e2e.kubernetes.story import running_cluster

pytestmark = [pytest.mark.root, pytest.mark.kubernetes, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("kube-node"), "node") as c:
        yield c


def test_static_pv_schedules_only_in_its_zone(cluster: Cluster) -> None:
    scenarios.static_pv(cluster)


def test_labels_only_pv_schedules_in_its_zone(cluster: Cluster) -> None:
    scenarios.labels_only_pv(cluster)


def test_topology_aware_claim_and_data_across_nodes(cluster: Cluster) -> None:
    scenarios.topology_aware(cluster)
    assert not cluster.admin.get("/apis/storage.k8s.io/v1/volumeattachments")["items"]


def test_a_zone_that_does_not_sell_the_category_is_never_chosen(cluster: Cluster) -> None:
    scenarios.category_not_sold(cluster)


def test_a_category_only_some_families_attach_lands_on_one_of_them(cluster: Cluster) -> None:
    placement.family_placement(cluster)


def test_a_regional_disk_follows_its_pod_across_zones(cluster: Cluster) -> None:
    placement.regional_follows_its_pod(cluster)


def test_a_zone_out_of_stock_is_skipped_by_the_scheduler(cluster: Cluster) -> None:
    placement.out_of_stock_zone_is_skipped(cluster)


def test_online_resize(cluster: Cluster) -> None:
    scenarios.online_resize(cluster)


def test_snapshot_and_restore(cluster: Cluster) -> None:
    scenarios.snapshot_restore(cluster)


def test_volume_attributes_class_change(cluster: Cluster) -> None:
    scenarios.modify_volume(cluster)


def test_no_sidecar_was_refused(cluster: Cluster) -> None:
    scenarios.no_refusals(cluster)
