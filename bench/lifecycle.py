"""A volume's whole life through ``csi-disk serve`` in controller attach mode, N at a time:
create -> publish -> unpublish -> delete, the way the sidecars drive it.

The client plays csi-provisioner (100 workers: CreateVolume, DeleteVolume) and csi-attacher
(10 workers: ControllerPublish, ControllerUnpublish), retrying what the sidecars retry. The
emulator takes as long as ECS does (Creating 1 s, Attaching 2 s, Detaching 1 s), holds 13
instances in one zone and enforces its per-action API quotas, so the driver sees what a
busy account sees. Each phase reports its wall time, the calls' p50/p99, the ECS calls per
volume by action (counted by the emulator), the driver's CPU seconds and its peak RSS.

Each phase is also compared with its ideal, worked out in the same run:

- create: waves of creates (as many as the provisioner's workers) times Creating's latency,
  plus the time the bench itself takes to send the same N CreateDisk calls straight to the
  emulator with as many workers (what the machine needs for the calls alone), plus the
  time the action's quota makes the calls wait;
- publish and unpublish: waves of attaches (detaches) times their latency, a wave being as
  many calls as the attacher's workers and the instances allow (one attach per instance at
  a time), plus the quota's wait;
- delete: the bench's own N DeleteDisk calls, plus the quota's wait.

A quota admits a minute's calls at once, so the quota's wait is 0 for N up to the quota.

``baseline`` names a git revision whose driver runs the same lifecycle on a fresh emulator
in the same run (``--baseline main``): the before/after columns.
"""

from __future__ import annotations

import math
import os
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench.common import (
    Daemon,
    Report,
    ak_env,
    emulator,
    percentile,
    ratio,
    rss_kib,
    serving,
    work_through,
)
from csi_disk.cloud.credentials import Credentials, StaticProvider
from csi_disk.cloud.ecs import EcsCloud
from csi_disk.cloud.port import AVAILABLE, DiskRequest
from csi_disk.cloud.quotas import DEFAULT_PER_MINUTE, ApiQuotas
from csi_disk.csi_pb import csi_pb2
from csi_disk_emulator.process import EmulatorInfo

GIB = 1 << 30
CALL_TIMEOUT = 120.0  # each call; the sidecars in deploy/ allow 300 s
# What the sidecars retry (with backoff): anything but a final answer about the request.
RETRIED = frozenset(
    {
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
MAX_ATTEMPTS = 10
PHASES = ("create", "publish", "unpublish", "delete")
ACTIONS = {
    "create": "CreateDisk",
    "publish": "AttachDisk",
    "unpublish": "DetachDisk",
    "delete": "DeleteDisk",
}
Mode = csi_pb2.VolumeCapability.AccessMode


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...]
    create_s: float  # the emulator's transition latencies
    attach_s: float
    detach_s: float
    instances: int  # in the one zone
    provisioner_workers: int
    attacher_workers: int


FULL = Settings((20, 100, 200), 1.0, 2.0, 1.0, 13, 100, 10)
QUICK = Settings((3,), 0.05, 0.1, 0.05, 3, 4, 2)


@dataclass
class Phase:
    name: str
    volumes: int
    wall_s: float
    latencies: list[float]  # per volume, until its call succeeded (retries included)
    retries: int
    ecs_calls: dict[str, int]
    cpu_s: float
    ideal_s: float = 0.0

    @property
    def ecs_per_volume(self) -> float:
        return sum(self.ecs_calls.values()) / self.volumes


@dataclass
class Lifecycle:
    driver: str  # "driver", or "baseline <rev>"
    volumes: int
    phases: list[Phase] = field(default_factory=list)
    peak_rss_kib: int = 0

    def calls(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for phase in self.phases:
            for action, count in phase.ecs_calls.items():
                total[action] = total.get(action, 0) + count
        return total

    @property
    def ecs_per_volume(self) -> float:
        return sum(self.calls().values()) / self.volumes

    @property
    def wall_s(self) -> float:
        return sum(p.wall_s for p in self.phases)

    @property
    def ideal_s(self) -> float:
        return sum(p.ideal_s for p in self.phases)


# --- the daemon -------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM) in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return rss_kib(pid)


def export_source(revision: str, directory: Path) -> Path:
    """The driver package at ``revision`` of this repository, unpacked under ``directory``."""
    if not revision or revision.startswith("-"):
        raise ValueError(f"baseline {revision[:40]!r} is not a git revision")
    root = Path(__file__).resolve().parents[1]
    directory.mkdir(parents=True, exist_ok=True)
    archive = directory / "source.tar"
    with open(archive, "wb") as out:
        subprocess.run(
            ["git", "-C", str(root), "archive", "--format=tar", revision, "--", "csi_disk"],
            stdout=out,
            check=True,
        )
    with tarfile.open(archive) as tar:
        tar.extractall(directory, filter="data")
    return directory


def controller_args(info: EmulatorInfo) -> list[str]:
    """``csi-disk serve`` flags for a controller in controller attach mode on the emulator."""
    return [
        "--mode", "controller",
        "--attach-mode", "controller",
        "--ecs-endpoint", info.ecs_endpoint,
        "--metadata-endpoint", info.instances[0].metadata_endpoint,
        "--region", info.region,
        "--operation-timeout", "120",
    ]  # fmt: skip


def driver_env(info: EmulatorInfo, source: Path | None) -> dict[str, str]:
    """The daemon's environment; with ``source`` (an exported driver package) that package
    is the one ``python -m csi_disk`` imports: it comes first on the path, and the working
    directory (this checkout) is kept off it."""
    env = ak_env(info)
    if source is not None:
        env |= {"PYTHONPATH": str(source), "PYTHONSAFEPATH": "1"}
    return env


# --- the sidecars -----------------------------------------------------------------------


def capability() -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
        access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER),
    )


def with_retries(call: Callable[[], object]) -> int:
    """Make ``call`` until it succeeds, backing off on what the sidecars retry; the retries."""
    delay = 0.5
    for attempt in range(MAX_ATTEMPTS):
        try:
            call()
            return attempt
        except grpc.RpcError as err:
            if err.code() not in RETRIED or attempt == MAX_ATTEMPTS - 1:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


def run_workers(
    info: EmulatorInfo, workers: int, items: Sequence[str], call: Callable[[int], object]
) -> tuple[float, list[float], int]:
    """``workers`` threads work through ``items`` in order, as a sidecar's queue does; the
    wall time from release to the last item, each item's time, and the retries."""
    lock = threading.Lock()
    next_index = [0]
    latencies: list[float] = []
    retries = [0]
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers + 1)

    def worker() -> None:
        barrier.wait()
        while True:
            with lock:
                index = next_index[0]
                next_index[0] += 1
            if index >= len(items):
                return
            began = time.monotonic()
            try:
                retried = with_retries(lambda i=index: call(i))
            except BaseException as err:  # reported after the run, not lost in a thread
                with lock:
                    errors.append(err)
                return
            with lock:
                latencies.append(time.monotonic() - began)
                retries[0] += retried

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    info.admin("POST", "calls/reset")
    began = time.monotonic()
    barrier.wait()
    for t in threads:
        t.join()
    wall = time.monotonic() - began
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(items)} calls failed; first: {errors[0]!r}")
    return wall, latencies, retries[0]


def lifecycle(
    daemon: Daemon, info: EmulatorInfo, settings: Settings, n: int, driver: str
) -> Lifecycle:
    """N volumes through create, publish, unpublish and delete, phase after phase."""
    stub = daemon.controller
    zone = info.zones[0]
    nodes = [i.id for i in info.instances_in(zone)]
    run = uuid.uuid4().hex[:10]
    names = [f"pvc-{run}-{i}" for i in range(n)]
    volume_ids: list[str] = [""] * n

    def create(i: int) -> None:
        reply = stub.CreateVolume(
            csi_pb2.CreateVolumeRequest(
                name=names[i],
                capacity_range=csi_pb2.CapacityRange(required_bytes=20 * GIB),
                volume_capabilities=[capability()],
                parameters={"type": "cloud_essd"},
                accessibility_requirements=csi_pb2.TopologyRequirement(
                    requisite=[csi_pb2.Topology(segments={"topology.kubernetes.io/zone": zone})]
                ),
            ),
            timeout=CALL_TIMEOUT,
        )
        volume_ids[i] = reply.volume.volume_id

    def publish(i: int) -> None:
        stub.ControllerPublishVolume(
            csi_pb2.ControllerPublishVolumeRequest(
                volume_id=volume_ids[i],
                node_id=nodes[i % len(nodes)],
                volume_capability=capability(),
            ),
            timeout=CALL_TIMEOUT,
        )

    def unpublish(i: int) -> None:
        stub.ControllerUnpublishVolume(
            csi_pb2.ControllerUnpublishVolumeRequest(
                volume_id=volume_ids[i], node_id=nodes[i % len(nodes)]
            ),
            timeout=CALL_TIMEOUT,
        )

    def delete(i: int) -> None:
        stub.DeleteVolume(
            csi_pb2.DeleteVolumeRequest(volume_id=volume_ids[i]), timeout=CALL_TIMEOUT
        )

    steps: dict[str, tuple[int, Callable[[int], None]]] = {
        "create": (settings.provisioner_workers, create),
        "publish": (settings.attacher_workers, publish),
        "unpublish": (settings.attacher_workers, unpublish),
        "delete": (settings.provisioner_workers, delete),
    }
    result = Lifecycle(driver, n)
    pid = daemon.process.pid
    for name in PHASES:
        workers, call = steps[name]
        cpu_before = cpu_seconds(pid)
        wall, latencies, retries = run_workers(info, workers, names, call)
        calls = {a: c for a, c in info.calls().items() if c}
        result.phases.append(
            Phase(name, n, wall, latencies, retries, calls, cpu_seconds(pid) - cpu_before)
        )
    result.peak_rss_kib = peak_rss_kib(pid)
    return result


# --- the ideal --------------------------------------------------------------------------


@dataclass
class Floor:
    """Seconds the bench takes to send N CreateDisk and N DeleteDisk straight to ECS."""

    create_s: float
    delete_s: float


def direct_floor(info: EmulatorInfo, n: int, workers: int) -> Floor:
    """The same calls as the create and delete phases, sent by the bench's own ECS client
    (no client-side quota) with as many workers, without gRPC or a driver in between."""
    cloud = EcsCloud(
        info.region,
        StaticProvider(Credentials(info.access_key_id, info.access_key_secret)),
        endpoint=info.ecs_endpoint,
        quotas=ApiQuotas({"*": 0}),
        pool_size=workers,
    )
    zone = info.zones[0]
    run = uuid.uuid4().hex[:10]
    disk_ids: list[str] = [""] * n
    items = [str(i) for i in range(n)]

    def create(i: int) -> None:
        disk_ids[i] = cloud.create_disk(
            DiskRequest(zone, "cloud_essd", 20, client_token=f"floor-{run}-{i}")
        )

    def delete(i: int) -> None:
        cloud.delete_disk(disk_ids[i])

    create_s = work_through(workers, len(items), create, "direct creates")
    deadline = time.monotonic() + CALL_TIMEOUT
    while not all(d.status == AVAILABLE for d in cloud.describe_disks(disk_ids)):
        if time.monotonic() > deadline:
            raise RuntimeError("the floor's disks never became Available")
        time.sleep(0.1)
    delete_s = work_through(workers, len(items), delete, "direct deletes")
    return Floor(create_s, delete_s)


def quota_wait(n: int, per_minute: int) -> float:
    """Seconds N calls wait for an action's quota: a minute's calls go at once."""
    if per_minute <= 0:
        return 0.0
    return (math.ceil(n / per_minute) - 1) * 60.0


def ideal(settings: Settings, phase: str, n: int, floor: Floor) -> float:
    """The phase's time if the driver added nothing but the calls themselves."""
    creates = math.ceil(n / settings.provisioner_workers)
    attaches = math.ceil(n / min(settings.attacher_workers, settings.instances))
    quota = quota_wait(n, DEFAULT_PER_MINUTE)
    return {
        "create": creates * settings.create_s + floor.create_s,
        "publish": attaches * settings.attach_s,
        "unpublish": attaches * settings.detach_s,
        "delete": floor.delete_s,
    }[phase] + quota


# --- the report -------------------------------------------------------------------------


COLUMNS = [
    "driver",
    "N",
    "phase",
    "wall s",
    "ideal s",
    "vs ideal",
    "p50 s",
    "p99 s",
    "retries",
    "ECS calls/vol",
    "by action /vol",
    "CPU s",
    "peak RSS MiB",
]


def by_action(calls: dict[str, int], n: int) -> str:
    return " ".join(f"{a}={c / n:.2f}" for a, c in sorted(calls.items()))


def rows(result: Lifecycle) -> list[dict[str, int | float | str]]:
    n = result.volumes
    out: list[dict[str, int | float | str]] = []
    for p in result.phases:
        out.append(
            {
                "driver": result.driver,
                "N": n,
                "phase": p.name,
                "wall s": p.wall_s,
                "ideal s": p.ideal_s,
                "vs ideal": ratio(p.wall_s, p.ideal_s),
                "p50 s": percentile(p.latencies, 0.5),
                "p99 s": percentile(p.latencies, 0.99),
                "retries": p.retries,
                "ECS calls/vol": p.ecs_per_volume,
                "by action /vol": by_action(p.ecs_calls, n),
                "CPU s": p.cpu_s,
                "peak RSS MiB": "",
            }
        )
    out.append(
        {
            "driver": result.driver,
            "N": n,
            "phase": "lifecycle",
            "wall s": result.wall_s,
            "ideal s": result.ideal_s,
            "vs ideal": ratio(result.wall_s, result.ideal_s),
            "p50 s": "",
            "p99 s": "",
            "retries": sum(p.retries for p in result.phases),
            "ECS calls/vol": result.ecs_per_volume,
            "by action /vol": by_action(result.calls(), n),
            "CPU s": sum(p.cpu_s for p in result.phases),
            "peak RSS MiB": result.peak_rss_kib / 1024,
        }
    )
    return out


def measure(
    workdir: Path, settings: Settings, n: int, driver: str, source: Path | None
) -> Lifecycle:
    """One lifecycle of N volumes on a fresh emulator (its quotas and counters its own)."""
    base = workdir / f"{driver.split()[0]}-{n}"
    with (
        emulator(
            base / "ecs",
            1.0,
            seed=n,
            zones="cn-hangzhou-h",
            instances_per_zone=settings.instances,
            latency=(
                f"create={settings.create_s},attach={settings.attach_s},detach={settings.detach_s}"
            ),
        ) as info,
        serving(base, "controller", controller_args(info), driver_env(info, source)) as daemon,
    ):
        floor = direct_floor(info, n, settings.provisioner_workers)
        result = lifecycle(daemon, info, settings, n, driver)
    for phase in result.phases:
        phase.ideal_s = ideal(settings, phase.name, n, floor)
    return result


def run(workdir: Path, quick: bool, baseline: str = "") -> Report:
    settings = QUICK if quick else FULL
    report = Report(
        name="lifecycle",
        title=(
            f"Volume lifecycle through csi-disk serve (controller attach), "
            f"{settings.instances} instances, {settings.provisioner_workers} provisioner and "
            f"{settings.attacher_workers} attacher workers"
        ),
        columns=COLUMNS,
    )
    source = export_source(baseline, workdir / "baseline") if baseline else None
    results: list[Lifecycle] = []
    for n in settings.sizes:
        after = measure(workdir, settings, n, "driver", None)
        results.append(after)
        report.rows.extend(rows(after))
        for phase in after.phases:
            report.ratios[f"{phase.name}_n{n}_over_ideal"] = ratio(phase.wall_s, phase.ideal_s)
        report.ratios[f"lifecycle_n{n}_over_ideal"] = ratio(after.wall_s, after.ideal_s)
        report.ratios[f"ecs_calls_per_volume_n{n}"] = after.ecs_per_volume
        if source is not None:
            before = measure(workdir, settings, n, f"baseline {baseline}", source)
            results.append(before)
            report.rows.extend(rows(before))
            report.ratios[f"ecs_calls_per_volume_n{n}_before_over_after"] = ratio(
                before.ecs_per_volume, after.ecs_per_volume
            )
            for b, a in zip(before.phases, after.phases, strict=True):
                report.ratios[f"{a.name}_n{n}_before_over_after"] = ratio(b.wall_s, a.wall_s)
            report.ratios[f"lifecycle_n{n}_before_over_after"] = ratio(before.wall_s, after.wall_s)
    report.notes.append(
        f"latencies: Creating {settings.create_s:g}s, Attaching {settings.attach_s:g}s, "
        f"Detaching {settings.detach_s:g}s; emulator quotas {DEFAULT_PER_MINUTE}/min per "
        "action; each size on a fresh emulator and daemon"
    )
    report.notes.append(
        "ideal: create = waves of provisioner workers x Creating + the bench's own N "
        "CreateDisk calls; publish/unpublish = waves of min(attacher workers, instances) x "
        "the transition; delete = the bench's own N DeleteDisk calls; plus the quota's wait "
        "(0 up to a minute's quota)"
    )
    return report
