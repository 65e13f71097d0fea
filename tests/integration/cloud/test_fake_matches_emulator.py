"""The unit tests' fake cloud answers as the emulator does: the same calls, in the same order,
against tests.fakes.InMemoryCloud and against EcsCloud on the ECS emulator (this project's
reference of ECS behaviour) must end alike, refusal for refusal.

A rule the fake forgets lets a handler test pass on something ECS refuses; a scenario here
then shows two different outcome lists.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from csi_disk.cloud.credentials import Credentials, StaticProvider
from csi_disk.cloud.ecs import EcsCloud
from csi_disk.cloud.errors import EcsError
from csi_disk.cloud.port import AVAILABLE, IN_USE, Cloud, Disk, DiskRequest
from csi_disk.cloud.retry import RetryPolicy
from csi_disk_emulator.process import EmulatorInfo, running_emulator
from csi_disk_emulator.topology import ZONAL_CATEGORIES, default_topology
from tests.fakes import InMemoryCloud
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


@dataclass
class World:
    """One cloud (fake or emulated) and the instances the scenarios use."""

    cloud: Cloud
    zone: str
    here: str  # an instance in ``zone``
    far: str  # an instance in another zone
    set_instance_status: Callable[[str, str], None]

    def create(self, size: int = 20, **fields: object) -> str:
        fields.setdefault("zone", self.zone)
        fields.setdefault("category", "cloud_essd")
        fields.setdefault("client_token", f"n:{uuid.uuid4().hex}")
        disk_id = self.cloud.create_disk(DiskRequest(size_gib=size, **fields))  # type: ignore[arg-type]
        self.settle(disk_id, lambda d: d.status == AVAILABLE)
        return disk_id

    def disk(self, disk_id: str) -> Disk:
        (found,) = self.cloud.describe_disks([disk_id])
        return found

    def settle(self, disk_id: str, until: Callable[[Disk], bool]) -> Disk:
        return wait_until(lambda: until(d := self.disk(disk_id)) and d, f"disk {disk_id}")


def outcome(call: Callable[[], object]) -> str:
    try:
        call()
    except EcsError as err:
        return f"{type(err).__name__} {err.ecs_code}"
    return "ok"


# --- scenarios: each returns the outcome of every call it made ---------------------------------


def creating(w: World) -> list[str]:
    def make(token: str, **fields: object) -> Callable[[], str]:
        fields = {"zone": w.zone, "category": "cloud_essd", "size_gib": 20, **fields}
        return lambda: w.cloud.create_disk(DiskRequest(client_token=token, **fields))  # type: ignore[arg-type]

    token = f"n:{uuid.uuid4().hex}"
    first = make(token)()
    return [
        outcome(make(f"n:{uuid.uuid4().hex}", size_gib=10)),
        outcome(make(f"n:{uuid.uuid4().hex}", performance_level="PL9")),
        outcome(make(f"n:{uuid.uuid4().hex}", category="cloud_magic")),
        outcome(make(f"n:{uuid.uuid4().hex}", zone="cn-nowhere-z")),
        outcome(make("n:" + "x" * 63)),
        outcome(make(token, size_gib=30)),
        str(make(token)() == first),
    ]


def resizing(w: World) -> list[str]:
    disk_id = w.create(20)
    steps = [
        outcome(lambda: w.cloud.resize_disk(disk_id, 20, online=False)),
        outcome(lambda: w.cloud.resize_disk(disk_id, 10, online=False)),
        outcome(lambda: w.cloud.resize_disk(disk_id, 30, online=True)),
        outcome(lambda: w.cloud.resize_disk(disk_id, 30, online=False)),
        str(w.disk(disk_id).size_gib),
        outcome(lambda: w.cloud.resize_disk("d-2ze00000000000000000", 40, online=False)),
    ]
    return steps


def modifying(w: World) -> list[str]:
    disk_id = w.create(20, performance_level="PL1")
    spec = w.cloud.modify_disk_spec
    steps = [
        outcome(lambda: spec(disk_id, performance_level="PL2")),
        outcome(lambda: spec(disk_id, category="cloud_ssd", provisioned_iops=100)),
        outcome(lambda: spec(disk_id, category="cloud_ssd", performance_level="PL1")),
        outcome(lambda: spec(disk_id, category="cloud")),
        outcome(lambda: spec(disk_id, bursting_enabled=True)),
        outcome(lambda: spec(disk_id, performance_level="PL0")),
    ]
    w.settle(disk_id, lambda d: d.performance_level == "PL0")
    steps += [
        outcome(lambda: spec(disk_id, performance_level="PL1")),  # cooling down
        outcome(lambda: spec(disk_id, performance_level="PL0")),  # no change: done
    ]
    return steps


def attaching(w: World) -> list[str]:
    disk_id = w.create(20)
    steps = [
        outcome(lambda: w.cloud.attach_disk(disk_id, "i-2ze0000000000000nope")),
        outcome(lambda: w.cloud.attach_disk(disk_id, w.far)),
        outcome(lambda: w.cloud.detach_disk(disk_id, w.here)),
    ]
    w.set_instance_status(w.here, "Starting")
    try:
        steps.append(outcome(lambda: w.cloud.attach_disk(disk_id, w.here)))
    finally:
        w.set_instance_status(w.here, "Running")
    steps.append(outcome(lambda: w.cloud.attach_disk(disk_id, w.here)))
    w.settle(disk_id, lambda d: d.status == IN_USE)
    steps += [
        outcome(lambda: w.cloud.attach_disk(disk_id, w.here)),
        outcome(lambda: w.cloud.delete_disk(disk_id)),
        outcome(lambda: w.cloud.resize_disk(disk_id, 30, online=True)),
        outcome(lambda: w.cloud.detach_disk(disk_id, w.here)),
    ]
    w.settle(disk_id, lambda d: d.status == AVAILABLE)
    steps += [
        outcome(lambda: w.cloud.delete_disk(disk_id)),
        outcome(lambda: w.cloud.delete_disk(disk_id)),
    ]
    return steps


def snapshotting(w: World) -> list[str]:
    disk_id = w.create(20)
    token = f"n:{uuid.uuid4().hex}"
    snap_id = w.cloud.create_snapshot(disk_id, name="contract", client_token=token, tags={"k": "v"})

    def snapshot() -> object:
        return w.cloud.describe_snapshots(snapshot_ids=[snap_id]).items[0]

    wait_until(lambda: snapshot().ready, f"snapshot {snap_id}")  # type: ignore[attr-defined]
    steps = [
        str(dict(snapshot().tags)),  # type: ignore[attr-defined]
        str(w.cloud.create_snapshot(disk_id, name="contract", client_token=token, tags={"k": "v"})
            == snap_id),
        outcome(lambda: w.cloud.create_snapshot(disk_id, name="other", client_token=token)),
        outcome(lambda: w.create(10, snapshot_id=snap_id)),
    ]  # fmt: skip
    w.create(20, snapshot_id=snap_id)
    steps += [
        outcome(lambda: w.cloud.delete_snapshot(snap_id)),
        outcome(lambda: w.cloud.delete_snapshot(snap_id, force=True)),
        outcome(lambda: w.cloud.delete_snapshot(snap_id, force=True)),
    ]
    return steps


def offering(w: World) -> list[str]:
    """What DescribeAvailableResource answers, per zone and for the region, with and without
    an instance type, and what a family cannot attach."""

    def listed(**query: object) -> str:
        offers = w.cloud.available_disks(**query)  # type: ignore[arg-type]
        return str(sorted((o.zone, o.category, o.status_category, o.min_gib, o.max_gib)
                          for o in offers))  # fmt: skip

    entry = w.create(20, category="cloud_essd_entry")
    return [
        listed(),
        listed(zone=w.zone, instance_type="ecs.g8i.large"),
        listed(regional=True),
        listed(regional=True, instance_type="ecs.g7.large"),
        outcome(lambda: w.cloud.available_disks(instance_type="ecs.nope.large")),
        outcome(lambda: w.cloud.attach_disk(entry, w.here)),
    ]


def regional(w: World) -> list[str]:
    """A regional ESSD: no zone, its own size range, attached only by families that take it."""
    make = w.cloud.create_disk
    disk_id = w.create(20, zone="", category="cloud_regional_disk_auto")
    return [
        w.disk(disk_id).zone or "no zone",
        outcome(lambda: make(DiskRequest("", "cloud_regional_disk_auto", 9, "n:rg-small"))),
        outcome(lambda: w.cloud.attach_disk(disk_id, w.far)),
    ]


SCENARIOS = [creating, resizing, modifying, attaching, snapshotting, offering, regional]


# --- the two worlds ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    with running_emulator(
        tmp_path_factory.mktemp("ecs-contract"), latency_scale=0.01, seed=5, block_devices="off"
    ) as info:
        info.admin("POST", "/modify-cooling", {"seconds": 60})
        yield info


def emulated(info: EmulatorInfo) -> World:
    cloud = EcsCloud(
        info.region,
        StaticProvider(Credentials(info.access_key_id, info.access_key_secret)),
        endpoint=info.ecs_endpoint,
        retry_policy=RetryPolicy(max_attempts=1),
    )
    zone = info.zones[0]
    far = next(i for i in info.instances if i.zone != zone)

    def set_status(instance_id: str, status: str) -> None:
        info.admin("POST", f"/instances/{instance_id}/status", {"status": status})

    return World(cloud, zone, info.instances_in(zone)[0].id, far.id, set_status)


def faked(info: EmulatorInfo) -> World:
    fake = InMemoryCloud(region=info.region, zones=tuple(info.zones), latency=1, cooling=1000)
    for zone in default_topology(info.region, list(info.zones)).zones:
        fake.unsupported |= {(zone.id, c) for c in ZONAL_CATEGORIES if c not in zone.categories}
    for instance in info.instances:
        fake.add_instance(instance.id, instance.zone, instance_type=instance.instance_type)
    world = emulated(info)
    return World(fake, world.zone, world.here, world.far, fake.set_instance_status)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_the_fake_answers_as_the_emulator_does(
    emulator: EmulatorInfo, scenario: Callable[[World], list[str]]
) -> None:
    expected = scenario(emulated(emulator))
    assert any(step.startswith("Ecs") for step in expected), expected  # it refused something
    assert scenario(faked(emulator)) == expected
