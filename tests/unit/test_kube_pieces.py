"""The pure pieces of the real-cluster harness (csi_disk_demo/kube): kubelet's volume paths and
names, the translation of a pod template's args to host paths and loopback ports."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from csi_disk_demo.kube.host_pods import HostPod, image_name
from csi_disk_demo.kube.node_agent import (
    attachment_name,
    publish_path,
    quantity_bytes,
    staging_path,
    unique_volume_name,
)
from csi_disk_demo.kube.sandbox import parse_bind

DRIVER = "diskplugin.csi.alibabacloud.com"


def test_kubelet_paths_and_names() -> None:
    kubelet = Path("/var/lib/kubelet")
    digest = hashlib.sha256(b"d-1").hexdigest()
    assert staging_path(kubelet, DRIVER, "d-1") == Path(
        f"/var/lib/kubelet/plugins/kubernetes.io/csi/{DRIVER}/{digest}/globalmount"
    )
    assert publish_path(kubelet, "uid-1", "pvc-1") == Path(
        "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/pvc-1/mount"
    )
    assert unique_volume_name(DRIVER, "d-1") == f"kubernetes.io/csi/{DRIVER}^d-1"
    # kubelet's csi_attacher: sha256 of volume handle + driver + node, hex, after "csi-".
    expected = hashlib.sha256(f"d-1{DRIVER}i-1".encode()).hexdigest()
    assert attachment_name(DRIVER, "d-1", "i-1") == f"csi-{expected}"


@pytest.mark.parametrize(
    ("text", "size"),
    [("20Gi", 20 * 2**30), ("512Mi", 512 * 2**20), ("1000", 1000), ("2G", 2 * 10**9)],
)
def test_quantity_bytes(text: str, size: int) -> None:
    assert quantity_bytes(text) == size


def test_image_name_drops_tag_and_digest() -> None:
    assert image_name("registry.k8s.io/sig-storage/csi-resizer:v2.3.0") == (
        "registry.k8s.io/sig-storage/csi-resizer"
    )
    assert image_name("localhost:5000/csi-disk@sha256:abc") == "localhost:5000/csi-disk"
    assert image_name("csi-disk") == "csi-disk"


def test_args_are_translated_to_the_pods_folders_and_loopback(tmp_path: Path) -> None:
    spec = {
        "containers": [],
        "volumes": [
            {"name": "socket-dir", "emptyDir": {}},
            {"name": "kubelet-dir", "hostPath": {"path": "/var/lib/kubelet"}},
            {"name": "device-dir", "hostPath": {"path": "/dev"}},
        ],
    }
    pod = HostPod("p-0", "kube-system", spec, tmp_path / "pod", kubelet_dir=tmp_path / "kubelet",
                  volumes_root=tmp_path / "short")  # fmt: skip
    container = {
        "name": "c",
        "volumeMounts": [
            {"name": "socket-dir", "mountPath": "/csi"},
            {"name": "kubelet-dir", "mountPath": "/var/lib/kubelet"},
            {"name": "device-dir", "mountPath": "/dev"},
        ],
    }
    translate = pod.translate
    assert translate(container, "--endpoint=unix:///csi/csi.sock") == (
        f"--endpoint=unix://{tmp_path}/short/socket-dir/csi.sock"
    )
    assert translate(container, "--csi-address=/csi/csi.sock") == (
        f"--csi-address={tmp_path}/short/socket-dir/csi.sock"
    )
    assert translate(container, "--kubelet-dir=/var/lib/kubelet") == (
        f"--kubelet-dir={tmp_path}/kubelet"
    )
    assert translate(container, "--devices=/dev/disk") == "--devices=/dev/disk"
    assert translate(container, "--v=2") == "--v=2"
    assert translate(container, "--leader-election") == "--leader-election"
    wide = translate(container, "--metrics-address=0.0.0.0:9130")
    assert wide.startswith("--metrics-address=127.0.0.1:") and not wide.endswith(":9130")
    assert translate(container, "--other=/csix/file") == "--other=/csix/file"


@pytest.mark.parametrize("text", ["data", "/a:data", "/a:/b/../c", ":/b"])
def test_sandbox_binds_want_absolute_paths(text: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        parse_bind(text)
    assert parse_bind("/a:/data") == ("/a", "/data")


def test_the_clusters_layout_holds_what_the_scenarios_rely_on() -> None:
    """Every zone selling the seed's cloud_ssd has two nodes that attach it (a pod moves
    between them); ESSD Entry attaches to one node only; regional ESSD in two zones."""
    from csi_disk_demo.kube.cluster import LAYOUT, emulator_topology
    from csi_disk_emulator.topology import INSTANCE_TYPES, Topology

    topology = Topology.from_json(emulator_topology(LAYOUT))
    attaching: dict[str, list[tuple[str, str]]] = {}
    for instance in topology.instances:
        for category in INSTANCE_TYPES[instance.instance_type].categories:
            attaching.setdefault(category, []).append((instance.zone, instance.instance_type))
    for zone in topology.zones:
        if "cloud_ssd" in zone.categories:
            assert sum(z == zone.id for z, _ in attaching["cloud_ssd"]) >= 2, zone.id
    assert [t for _, t in attaching["cloud_essd_entry"]] == ["ecs.u1-c1m2.large"]
    assert len({z for z, _ in attaching["cloud_regional_disk_auto"]}) == 2
    assert "cloud_ssd" not in topology.zones[-1].categories
