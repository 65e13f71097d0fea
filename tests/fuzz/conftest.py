"""The plugin as the fuzz tests meet it: the controller and node services over the real ECS
adapter and Linux host, behind the real gRPC server and interceptor, against the ECS
emulator with loop devices.

The controller runs in controller attach mode (so Publish and Unpublish do something), the
node plugin in node attach mode on one emulated instance, each on its own socket. The
kubelet directory sits in a scratch root next to ``outside/``, a tree the plugin must never
change: links planted inside the kubelet directory lead there, and some requests name it
outright. ``Rig.outside_changes`` reports any change to it, any new entry at the top of the
host's root, the working directory (where a relative path would land) or the scratch root,
and any mount or loop device that appeared outside the kubelet directory; each example
checks it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from csi_disk import __version__
from csi_disk.attach import Attacher
from csi_disk.cloud.credentials import Credentials, StaticProvider
from csi_disk.cloud.ecs import EcsCloud
from csi_disk.cloud.waiter import DiskWaiter
from csi_disk.config import Config
from csi_disk.controller import ControllerService
from csi_disk.csi_pb import csi_pb2_grpc
from csi_disk.host.linux import LinuxHost
from csi_disk.host.mounts import read_mounts
from csi_disk.identity import IdentityService, Readiness
from csi_disk.node import NodeService
from csi_disk.server import Server
from csi_disk_demo.stack import sweep
from csi_disk_emulator.process import EmulatorInfo, running_emulator
from tests.conftest import require_root
from tests.integration.emulator.sdk import Ecs
from tests.waiting import wait_until

SECRET_MARK = "fuzz-secret-7f3a"  # every secrets map the fuzz sends holds it
RUNNER_CACHES = {".hypothesis", ".pytest_cache"}


@dataclass
class Served:
    server: Server
    channel: grpc.Channel


class LogTrap(logging.Handler):
    """Every log line the plugin writes, formatted as the daemon would, that holds the
    fuzz's secret; looked at as it is written, so a check costs nothing however long the
    run."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        if SECRET_MARK in line:
            self.leaks.append(line)


@dataclass
class Rig:
    info: EmulatorInfo
    root: Path
    kubelet: Path
    outside: Path
    instance_id: str
    zone: str
    disk_id: str  # an Available disk in the node's zone, for the controller's RPCs
    node_disk_id: str  # another, for the node's: never resized to tens of TiB
    snapshot_id: str
    controller: csi_pb2_grpc.ControllerStub
    node: csi_pb2_grpc.NodeStub
    identity: csi_pb2_grpc.IdentityStub
    logs: LogTrap
    mounts_before: list[str] = field(default_factory=list)
    outside_before: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    tops_before: dict[str, set[str]] = field(default_factory=dict)

    def snapshot_outside(self) -> dict[str, tuple[int, int, int]]:
        """Every entry of ``outside/`` with its mode, size and mtime."""
        seen = {}
        for dirpath, dirnames, filenames in os.walk(self.outside):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                seen[os.path.relpath(path, self.outside)] = (st.st_mode, st.st_size, st.st_mtime_ns)
        return seen

    def tops(self) -> dict[str, set[str]]:
        """The names at the top of the directories a stray path would land in, but for
        the test runner's own caches (hypothesis makes its directory on first use)."""
        return {d: set(os.listdir(d)) - RUNNER_CACHES for d in ("/", os.getcwd(), str(self.root))}

    def mounts_outside(self) -> list[str]:
        """Mount points outside the kubelet directory: anywhere on the host, but for the
        scratch directories of other runs sharing this machine's temporary directory."""
        kubelet, root, tmp = str(self.kubelet), str(self.root), tempfile.gettempdir()
        return sorted(
            m.mount_point
            for m in read_mounts()
            if m.mount_point != kubelet
            and not m.mount_point.startswith(kubelet + "/")
            and (m.mount_point.startswith(root + "/") or not m.mount_point.startswith(tmp + "/"))
        )

    def loops_outside(self) -> list[str]:
        """Loop devices on files under the scratch root other than the emulator's disks."""
        disks = str(self.info.state_dir / "disks") + "/"
        listing = subprocess.run(
            ["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        root = str(self.root) + "/"
        found = []
        for line in listing.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[1].startswith(root) and not parts[1].startswith(disks):
                found.append(parts[0])
        return sorted(found)

    def outside_changes(self, *, loops: bool) -> list[str]:
        """What changed outside the kubelet directory since the rig was set up; loop
        devices (one losetup run) only when asked."""
        problems = []
        now = self.snapshot_outside()
        if now != self.outside_before:
            changed = sorted(set(now.items()) ^ set(self.outside_before.items()))
            problems.append(f"outside/ changed: {changed}")
        for directory, names in self.tops().items():
            new = names - self.tops_before.get(directory, names)
            if new:
                problems.append(f"new entries in {directory}: {sorted(new)[:5]}")
        mounts = self.mounts_outside()
        if mounts != self.mounts_before:
            changed = sorted(set(mounts) ^ set(self.mounts_before))
            problems.append(f"mounts outside the kubelet dir changed: {changed}")
        if loops and self.loops_outside():
            problems.append(f"loop devices outside the emulator: {self.loops_outside()}")
        if self.logs.leaks:
            problems.append(f"a secret reached the log: {self.logs.leaks[0][:200]}")
        return problems


def _serve(servicer: Any, socket_path: Path, identity: IdentityService) -> Served:
    server = Server(f"unix://{socket_path}", workers=8)
    csi_pb2_grpc.add_IdentityServicer_to_server(identity, server.grpc_server)
    if isinstance(servicer, ControllerService):
        csi_pb2_grpc.add_ControllerServicer_to_server(servicer, server.grpc_server)
    else:
        csi_pb2_grpc.add_NodeServicer_to_server(servicer, server.grpc_server)
    server.start()
    return Served(server, grpc.insecure_channel(f"unix://{socket_path}"))


def _plant(kubelet: Path, outside: Path) -> None:
    """What a hostile or sloppy node might hold: links out, files where dirs go."""
    (outside / "etc").mkdir(parents=True)
    (outside / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (outside / "dir").mkdir()
    (outside / "dir" / "keep").write_text("keep me\n")
    (kubelet / "pods" / "p1" / "volumes").mkdir(parents=True)
    (kubelet / "plugins" / "kubernetes.io" / "csi").mkdir(parents=True)
    (kubelet / "link-out").symlink_to(outside / "dir")
    (kubelet / "pods" / "p1" / "link-file").symlink_to(outside / "etc" / "passwd")
    (kubelet / "pods" / "p1" / "dangling").symlink_to(outside / "nothing-here")
    (kubelet / "a-file").write_text("not a directory\n")


@pytest.fixture(scope="package")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    require_root()
    root = tmp_path_factory.mktemp("fuzz")
    kubelet, outside = root / "kubelet", root / "outside"
    _plant(kubelet, outside)
    trap = LogTrap()
    trap.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(trap)
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.INFO)
    with running_emulator(
        root / "ecs", zones="cn-hangzhou-h", instances_per_zone=1, latency_scale=0.01, seed=13
    ) as info:
        instance = info.instances[0]
        ecs = Ecs.for_account(info)
        disk_id = ecs.create_available(instance.zone, Size=20, DiskCategory="cloud_essd")
        node_disk_id = ecs.create_available(instance.zone, Size=20, DiskCategory="cloud_essd")
        snapshot_id = ecs.call("CreateSnapshot", DiskId=disk_id)["SnapshotId"]
        cloud = EcsCloud(
            info.region,
            StaticProvider(Credentials(info.access_key_id, info.access_key_secret)),
            endpoint=info.ecs_endpoint,
        )
        # The emulator runs at a hundredth of ECS's latencies; the poller keeps pace.
        waiter = DiskWaiter(cloud, 0.05)
        readiness = Readiness()
        readiness.set()
        identity = IdentityService(
            name="diskplugin.csi.alibabacloud.com",
            version=__version__,
            readiness=readiness,
            online_expansion=True,
        )
        controller_config = Config(attach_mode="controller", operation_timeout=20.0)
        controller = _serve(
            ControllerService(controller_config, cloud, waiter, default_zone=instance.zone),
            root / "controller.sock",
            identity,
        )
        node_config = Config(
            attach_mode="node",
            kubelet_dir=kubelet,
            operation_timeout=20.0,
            device_root=Path(instance.device_root),
        )
        node = _serve(
            NodeService(
                node_config,
                instance_id=instance.id,
                zone=instance.zone,
                region=info.region,
                attacher=Attacher(cloud, waiter, node_config),
                host=LinuxHost(node_config.device_root),
            ),
            root / "node.sock",
            identity,
        )
        wait_until(
            lambda: (
                ecs.call("DescribeSnapshots", SnapshotIds=f'["{snapshot_id}"]')["Snapshots"][
                    "Snapshot"
                ][0]["Status"]
                == "accomplished"
            ),
            "the seed snapshot",
            timeout=30,
        )
        rig = Rig(
            info=info,
            root=root,
            kubelet=kubelet,
            outside=outside,
            instance_id=instance.id,
            zone=instance.zone,
            disk_id=disk_id,
            node_disk_id=node_disk_id,
            snapshot_id=snapshot_id,
            controller=csi_pb2_grpc.ControllerStub(controller.channel),
            node=csi_pb2_grpc.NodeStub(node.channel),
            identity=csi_pb2_grpc.IdentityStub(node.channel),
            logs=trap,
        )
        rig.outside_before = rig.snapshot_outside()
        rig.mounts_before = rig.mounts_outside()
        rig.tops_before = rig.tops()
        try:
            yield rig
        finally:
            for served in (node, controller):
                served.channel.close()
                served.server.stop(0)
            waiter.close()
            logging.getLogger().removeHandler(trap)
            logging.getLogger().setLevel(level)
            sweep(kubelet)
