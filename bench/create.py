"""CreateVolume throughput through the daemon's socket, sequential vs concurrent callers.

external-provisioner runs up to 100 workers against one controller. While ECS latency
dominates a call (Creating, then one shared poll), concurrent callers should overlap almost
perfectly: the thread pool is sized for the sidecars and waits share one poller. The
per-action ECS budgets (a minute's quota may go at once) do not pace a burst this size.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    Daemon,
    Report,
    ak_env,
    emulator,
    percentile,
    ratio,
    run_together,
    serve_args,
    serving,
)
from csi_disk.csi_pb import csi_pb2
from csi_disk_emulator.process import EmulatorInfo

GIB = 1 << 30
CALL_TIMEOUT = 120.0


@dataclass(frozen=True)
class Settings:
    callers: tuple[int, ...]
    latency_scale: float  # Creating lasts this many seconds
    min_volumes: int  # volumes per level: at least this many, and two per caller


FULL = Settings(callers=(1, 10, 50, 100), latency_scale=0.5, min_volumes=8)
QUICK = Settings(callers=(1, 4), latency_scale=0.1, min_volumes=3)


@dataclass
class Level:
    callers: int
    volumes: int
    wall_s: float
    latencies: list[float]
    ecs_calls: dict[str, int]

    @property
    def per_second(self) -> float:
        return self.volumes / self.wall_s if self.wall_s else 0.0


def create_request(name: str) -> csi_pb2.CreateVolumeRequest:
    """What external-provisioner sends for a 20 GiB ext4 claim with default parameters."""
    return csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=20 * GIB),
        volume_capabilities=[
            csi_pb2.VolumeCapability(
                mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
                access_mode=csi_pb2.VolumeCapability.AccessMode(
                    mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
                ),
            )
        ],
        parameters={"type": "cloud_essd"},
    )


def create_volumes(daemon: Daemon, info: EmulatorInfo, callers: int, volumes: int) -> Level:
    """``callers`` threads create ``volumes`` volumes between them, as provisioner workers do."""
    stub = daemon.controller
    run = uuid.uuid4().hex[:10]
    lock = threading.Lock()
    next_index = [0]
    latencies: list[float] = []
    errors: list[BaseException] = []

    def worker(_: int) -> None:
        while True:
            with lock:
                index = next_index[0]
                next_index[0] += 1
            if index >= volumes:
                return
            began = time.monotonic()
            try:
                stub.CreateVolume(create_request(f"pvc-{run}-{index}"), timeout=CALL_TIMEOUT)
            except BaseException as err:  # reported after the run, not lost in a thread
                with lock:
                    errors.append(err)
                return
            with lock:
                latencies.append(time.monotonic() - began)

    wall = run_together(info, callers, worker)
    if errors:
        raise RuntimeError(f"{len(errors)} CreateVolume calls failed; first: {errors[0]!r}")
    return Level(callers, volumes, wall, latencies, info.calls())


def describes_per_volume(level: Level) -> float:
    """DescribeDisks calls per volume: waits for concurrent creates share one poll."""
    return level.ecs_calls.get("DescribeDisks", 0) / level.volumes


def run(workdir: Path, quick: bool) -> Report:
    settings = QUICK if quick else FULL
    report = Report(
        name="create_volume",
        title="CreateVolume throughput through csi-disk serve --mode controller",
        columns=[
            "callers",
            "volumes",
            "wall s",
            "volumes/s",
            "p50 s",
            "p99 s",
            "vs sequential",
            "DescribeDisks/vol",
        ],
    )
    base = workdir / "create"
    with (
        emulator(base / "ecs", settings.latency_scale, seed=42) as info,
        serving(base, "controller", serve_args(info, "controller", base), ak_env(info)) as daemon,
    ):
        create_volumes(daemon, info, 1, 1)  # warm-up: channel, SDK client, waiter thread
        sequential: Level | None = None
        for callers in settings.callers:
            level = create_volumes(daemon, info, callers, max(settings.min_volumes, 2 * callers))
            sequential = sequential or level
            speedup = ratio(level.per_second, sequential.per_second)
            report.rows.append(
                {
                    "callers": callers,
                    "volumes": level.volumes,
                    "wall s": level.wall_s,
                    "volumes/s": level.per_second,
                    "p50 s": percentile(level.latencies, 0.5),
                    "p99 s": percentile(level.latencies, 0.99),
                    "vs sequential": speedup,
                    "DescribeDisks/vol": describes_per_volume(level),
                }
            )
            if callers > 1:
                report.ratios[f"throughput_{callers}_callers_over_sequential"] = speedup
                report.ratios[f"describe_per_volume_sequential_over_{callers}_callers"] = ratio(
                    describes_per_volume(sequential), describes_per_volume(level)
                )
    report.notes.append(
        f"Creating lasts {settings.latency_scale:g}s; the daemon polls every 1s and budgets "
        "each ECS action at 500 calls a minute, which a burst of this size stays within"
    )
    return report
