"""The node service on real loop devices: the emulator attaches, the real EcsCloud asks.

One emulator serves the whole module set; each test gets its own kubelet directory inside
``host_dir``, whose leak check fails the test if a mount is left behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from csi_disk.cloud.credentials import Credentials, StaticProvider
from csi_disk.cloud.ecs import EcsCloud
from csi_disk.cloud.metadata import MetadataClient
from csi_disk.cloud.port import DiskRequest
from csi_disk.cloud.retry import RetryPolicy
from csi_disk.cloud.waiter import DiskWaiter
from csi_disk.config import Config
from csi_disk.node import NodeService
from csi_disk.tokens import VOLUME_NAME_TAG
from csi_disk_emulator.process import EmulatorInfo, EmulatorInstance, running_emulator
from tests.conftest import require_root

LATENCY_SCALE = 0.01


@pytest.fixture(scope="session")
def node_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    require_root()
    with running_emulator(
        tmp_path_factory.mktemp("ecs-node"),
        latency_scale=LATENCY_SCALE,
        seed=23,
        block_devices="on",
    ) as info:
        yield info


@pytest.fixture
def cloud(node_emulator: EmulatorInfo) -> EcsCloud:
    return EcsCloud(
        node_emulator.region,
        StaticProvider(Credentials(node_emulator.access_key_id, node_emulator.access_key_secret)),
        endpoint=node_emulator.ecs_endpoint,
        retry_policy=RetryPolicy(base_delay=0.02, max_delay=0.1),
    )


@pytest.fixture
def waiter(cloud: EcsCloud) -> Iterator[DiskWaiter]:
    w = DiskWaiter(cloud, interval=0.05)
    yield w
    w.close()


def instances(info: EmulatorInfo, bus: str) -> list[EmulatorInstance]:
    return [i for i in info.instances if i.bus == bus]


@pytest.fixture
def kubelet(host_dir: Path) -> Path:
    path = host_dir / "kubelet"
    path.mkdir()
    return path


@pytest.fixture
def make_node(
    node_emulator: EmulatorInfo, cloud: EcsCloud, waiter: DiskWaiter, kubelet: Path
) -> Callable[[EmulatorInstance], NodeService]:
    """``make_node(instance)``: the node service as that instance's plugin would build it."""

    def make(instance: EmulatorInstance) -> NodeService:
        config = Config(
            kubelet_dir=kubelet,
            device_root=Path(instance.device_root),
            metadata_endpoint=instance.metadata_endpoint,
            operation_timeout=30.0,
        )
        metadata = MetadataClient(instance.metadata_endpoint)
        return NodeService.from_metadata(config, metadata, cloud, waiter, region=cloud.region)

    return make


@pytest.fixture
def make_disk(
    node_emulator: EmulatorInfo, cloud: EcsCloud, waiter: DiskWaiter
) -> Iterator[Callable[[str], str]]:
    """``make_disk(zone)``: a 1 GiB disk, created like CreateVolume would; detached at the end."""
    made: list[str] = []

    def make(zone: str) -> str:
        name = f"pv-{uuid.uuid4().hex[:8]}"
        disk_id = cloud.create_disk(
            DiskRequest(
                zone=zone,
                category="cloud_auto",
                size_gib=1,
                client_token=f"n:{name}",
                tags={VOLUME_NAME_TAG: name},
            )
        )
        waiter.wait(disk_id, lambda d: d is not None and d.status == "Available", 30)
        made.append(disk_id)
        return disk_id

    yield make
    for disk in cloud.describe_disks(made):
        for instance_id in disk.attachments:
            cloud.detach_disk(disk.id, instance_id)
    if made:
        waiter.wait(made[-1], lambda d: d is None or not d.attachments, 30)
