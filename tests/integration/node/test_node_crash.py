"""The node plugin killed with SIGKILL between two steps converges on restart.

For each named failpoint the plugin runs as ``csi-disk serve --mode node`` with that point
armed, dies in the middle of a call, and is restarted on the same socket without it. The
kubelet's repeat of the same call must then succeed, and independent tools (findmnt,
blkid, losetup, the emulator's attachment table) must show one filesystem that was never
made twice, one mount per path, and nothing left behind after unstaging.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from csi_disk.categories import GIB
from csi_disk.csi_pb import csi_pb2
from csi_disk.failpoints import ENV_VAR
from csi_disk_emulator.process import EmulatorInfo, EmulatorInstance
from tests.daemon import Daemon, running_daemon
from tests.integration.node.conftest import instances
from tests.integration.node.tools import blkid, disk_file, loops_of, tool

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

Cap = csi_pb2.VolumeCapability
SMALL_FS = "512M"  # a filesystem made smaller than its 1 GiB disk, so staging must grow it


@dataclass(frozen=True)
class Point:
    """A failpoint, the call it interrupts and what has to happen before that call."""

    name: str
    call: str  # "stage", "publish" or "unstage"
    fstype: str = "ext4"
    preformat: bool = False  # the disk already holds a smaller filesystem


POINTS = [
    Point("stage:after-attach", "stage"),
    Point("stage:after-format", "stage"),
    Point("stage:after-mount", "stage"),
    Point("stage:before-grow", "stage", fstype="xfs", preformat=True),
    Point("publish:after-mkdir", "publish"),
    Point("publish:after-bind", "publish"),
    Point("unstage:after-unmount", "unstage"),
    Point("unstage:before-detach", "unstage"),
]


def mounts_at(path: Path) -> list[str]:
    """Every mount stacked at exactly ``path``, as findmnt lists them."""
    out = tool("findmnt", "-n", "-r", "-o", "SOURCE", "--mountpoint", str(path), check=False)
    return out.splitlines()


def attachments(info: EmulatorInfo, disk_id: str) -> list[dict[str, Any]]:
    """The emulator's own record of where the disk is attached."""
    rows = info.admin("GET", "disks")["attachments"]
    return [r for r in rows if r["disk_id"] == disk_id]


def uuid_of(info: EmulatorInfo, disk_id: str) -> str:
    """The filesystem UUID on the disk's loop device (or its file when detached); "" if none."""
    loops = loops_of(info, disk_id)
    return blkid(loops[0] if loops else disk_file(info, disk_id)).get("UUID", "")


def fs_bytes(path: Path) -> int:
    """Size of the filesystem mounted at ``path`` as df reports it."""
    return int(tool("df", "-B1", "--output=size", str(path)).splitlines()[-1])


class Plugin:
    """How the kubelet drives one volume through the plugin's socket."""

    def __init__(self, disk_id: str, kubelet: Path, fstype: str) -> None:
        self.disk_id = disk_id
        self.staging = kubelet / "plugins" / "kubernetes.io" / "csi" / disk_id / "globalmount"
        self.target = kubelet / "pods" / "p1" / "volumes" / disk_id / "mount"
        self.cap = Cap(mount=Cap.MountVolume(fs_type=fstype), access_mode=Cap.AccessMode(mode=1))

    def call(self, daemon: Daemon, name: str) -> None:
        node = daemon.node
        if name == "stage":
            request: Any = csi_pb2.NodeStageVolumeRequest(
                volume_id=self.disk_id,
                staging_target_path=str(self.staging),
                volume_capability=self.cap,
            )
            node.NodeStageVolume(request, timeout=60)
        elif name == "publish":
            request = csi_pb2.NodePublishVolumeRequest(
                volume_id=self.disk_id,
                staging_target_path=str(self.staging),
                target_path=str(self.target),
                volume_capability=self.cap,
            )
            node.NodePublishVolume(request, timeout=30)
        elif name == "unpublish":
            request = csi_pb2.NodeUnpublishVolumeRequest(
                volume_id=self.disk_id, target_path=str(self.target)
            )
            node.NodeUnpublishVolume(request, timeout=30)
        elif name == "unstage":
            request = csi_pb2.NodeUnstageVolumeRequest(
                volume_id=self.disk_id, staging_target_path=str(self.staging)
            )
            node.NodeUnstageVolume(request, timeout=60)
        else:
            raise ValueError(name)


def serve_args(info: EmulatorInfo, instance: EmulatorInstance, kubelet: Path) -> list[str]:
    return [
        "--mode", "node",
        "--attach-mode", "node",
        "--ecs-endpoint", info.ecs_endpoint,
        "--metadata-endpoint", instance.metadata_endpoint,
        "--kubelet-dir", str(kubelet),
        "--device-root", instance.device_root,
        "--operation-timeout", "30",
    ]  # fmt: skip


@pytest.mark.parametrize("point", POINTS, ids=[p.name for p in POINTS])
def test_killed_at_failpoint_converges_on_restart(
    point: Point,
    node_emulator: EmulatorInfo,
    make_disk: Callable[[str], str],
    kubelet: Path,
    host_dir: Path,
) -> None:
    instance = instances(node_emulator, "virtio")[0]
    disk_id = make_disk(instance.zone)
    if point.preformat:
        subprocess.run(
            [
                "mkfs.xfs",
                "-q",
                "-f",
                str(disk_file(node_emulator, disk_id)),
                "-d",
                f"size={SMALL_FS}",
            ],
            check=True,
            capture_output=True,
        )
    plugin = Plugin(disk_id, kubelet, point.fstype)
    args = serve_args(node_emulator, instance, kubelet)
    secrets = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": node_emulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": node_emulator.access_key_secret,
    }
    sock = host_dir / "csi.sock"
    before = [c for c in ("stage",) if point.call != "stage"]
    first_uuid = uuid_of(node_emulator, disk_id)  # "" unless preformatted

    with running_daemon(sock, *args, env={**secrets, ENV_VAR: point.name}) as doomed:
        doomed.wait_ready()
        for name in before:
            plugin.call(doomed, name)
        first_uuid = first_uuid or uuid_of(node_emulator, disk_id)
        with pytest.raises(grpc.RpcError):
            plugin.call(doomed, point.call)
        assert doomed.process.wait(30) == -signal.SIGKILL, doomed.log()[-2000:]
    after_crash = uuid_of(node_emulator, disk_id)
    first_uuid = first_uuid or after_crash
    if point.preformat:
        assert after_crash == first_uuid  # the crash left the old filesystem alone

    with running_daemon(sock, *args, env=secrets) as daemon:
        daemon.wait_ready()
        plugin.call(daemon, point.call)  # the kubelet's retry
        plugin.call(daemon, point.call)  # and once more: still the same answer
        if point.call != "unstage":
            [loop] = loops_of(node_emulator, disk_id)
            assert mounts_at(plugin.staging) == [loop]
            uuid = blkid(loop)["UUID"]
            assert uuid
            if first_uuid:
                assert uuid == first_uuid, "the disk was formatted a second time"
            first_uuid = uuid
            if point.preformat:
                assert fs_bytes(plugin.staging) > 0.75 * GIB, "staging did not grow the filesystem"
        if point.call == "publish":
            assert mounts_at(plugin.target) == [loop]
            plugin.call(daemon, "unpublish")
            assert mounts_at(plugin.target) == []
        if point.call != "unstage":
            plugin.call(daemon, "unstage")
        assert daemon.process.poll() is None

    assert mounts_at(plugin.staging) == [] and mounts_at(plugin.target) == []
    assert loops_of(node_emulator, disk_id) == []
    assert attachments(node_emulator, disk_id) == []
    assert blkid(disk_file(node_emulator, disk_id)).get("UUID") == first_uuid
