"""The node service behind ``csi-disk serve --mode node``: the codes and effects a kubelet sees."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from csi_disk.csi_pb import csi_pb2
from csi_disk_emulator.process import EmulatorInfo
from tests.daemon import running_daemon
from tests.integration.node.conftest import instances
from tests.integration.node.tools import findmnt, loops_of

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

Cap = csi_pb2.VolumeCapability


def test_stage_publish_unpublish_unstage_over_the_socket(
    node_emulator: EmulatorInfo, make_disk: Callable[[str], str], kubelet: Path, host_dir: Path
) -> None:
    instance = instances(node_emulator, "virtio")[0]
    disk_id = make_disk(instance.zone)
    args = [
        "--mode", "node",
        "--attach-mode", "node",
        "--ecs-endpoint", node_emulator.ecs_endpoint,
        "--metadata-endpoint", instance.metadata_endpoint,
        "--kubelet-dir", str(kubelet),
        "--device-root", instance.device_root,
        "--operation-timeout", "30",
    ]  # fmt: skip
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": node_emulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": node_emulator.access_key_secret,
    }
    cap = Cap(mount=Cap.MountVolume(fs_type="ext4"), access_mode=Cap.AccessMode(mode=1))
    staging, target = kubelet / "plugins" / "pv" / "globalmount", kubelet / "pods" / "p" / "mnt"
    with running_daemon(host_dir / "csi.sock", *args, env=env) as daemon:
        daemon.wait_ready()
        node = daemon.node
        info = node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=10)
        assert info.node_id == instance.id
        with pytest.raises(grpc.RpcError) as bad:
            node.NodeStageVolume(
                csi_pb2.NodeStageVolumeRequest(
                    volume_id="../etc", staging_target_path=str(staging), volume_capability=cap
                ),
                timeout=10,
            )
        # No disk can have that id: NOT_FOUND, answered without a path built from it.
        assert bad.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as outside:
            node.NodeStageVolume(
                csi_pb2.NodeStageVolumeRequest(
                    volume_id=disk_id, staging_target_path="/tmp/x", volume_capability=cap
                ),
                timeout=10,
            )
        assert outside.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        stage = csi_pb2.NodeStageVolumeRequest(
            volume_id=disk_id, staging_target_path=str(staging), volume_capability=cap
        )
        node.NodeStageVolume(stage, timeout=60)
        [loop] = loops_of(node_emulator, disk_id)
        assert findmnt(staging)["SOURCE"] == loop
        node.NodePublishVolume(
            csi_pb2.NodePublishVolumeRequest(
                volume_id=disk_id,
                staging_target_path=str(staging),
                target_path=str(target),
                volume_capability=cap,
            ),
            timeout=30,
        )
        assert findmnt(target)["MAJ:MIN"] == findmnt(staging)["MAJ:MIN"]
        node.NodeUnpublishVolume(
            csi_pb2.NodeUnpublishVolumeRequest(volume_id=disk_id, target_path=str(target)),
            timeout=30,
        )
        unstage = csi_pb2.NodeUnstageVolumeRequest(
            volume_id=disk_id, staging_target_path=str(staging)
        )
        node.NodeUnstageVolume(unstage, timeout=60)
        node.NodeUnstageVolume(unstage, timeout=60)
    assert findmnt(staging) == {} and findmnt(target) == {}
    assert loops_of(node_emulator, disk_id) == []
