"""Memory: RSS of an idle ``csi-disk serve --mode all`` vs after volumes were created and
deleted through it, read from /proc/<pid>/status.

The first round grows the process once (worker threads, SDK connections, imported code
paths); a second, equal round should add next to nothing. Its ratio is the leak detector:
a cache or registry that keeps something per volume shows up as steady growth per round.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    Daemon,
    Report,
    ak_env,
    emulator,
    ratio,
    rss_kib,
    serve_args,
    serving,
    work_through,
)
from bench.create import CALL_TIMEOUT, create_request
from csi_disk.csi_pb import csi_pb2


@dataclass(frozen=True)
class Settings:
    volumes: int  # per round
    rounds: int
    callers: int
    latency_scale: float
    settle_s: float  # let finished calls' threads and buffers go quiet before reading RSS


FULL = Settings(volumes=100, rounds=2, callers=10, latency_scale=0.02, settle_s=1.0)
QUICK = Settings(volumes=10, rounds=2, callers=5, latency_scale=0.02, settle_s=0.3)


def create_and_delete(daemon: Daemon, volumes: int, callers: int) -> None:
    """Each of ``volumes`` volumes created, then deleted, by ``callers`` threads."""
    stub = daemon.controller
    run = uuid.uuid4().hex[:10]

    def cycle(index: int) -> None:
        reply = stub.CreateVolume(create_request(f"pvc-{run}-{index}"), timeout=CALL_TIMEOUT)
        stub.DeleteVolume(
            csi_pb2.DeleteVolumeRequest(volume_id=reply.volume.volume_id), timeout=CALL_TIMEOUT
        )

    work_through(callers, volumes, cycle, "volume cycles")


def run(workdir: Path, quick: bool) -> Report:
    settings = QUICK if quick else FULL
    report = Report(
        name="memory",
        title="Memory: RSS of csi-disk serve --mode all, idle vs after create+delete rounds",
        columns=["state", "volumes so far", "RSS MiB", "vs idle", "vs previous"],
    )
    base = workdir / "memory"
    with (
        emulator(base / "ecs", settings.latency_scale, seed=43) as info,
        serving(base, "all", serve_args(info, "all", base), ak_env(info)) as daemon,
    ):
        pid = daemon.process.pid
        time.sleep(settings.settle_s)
        idle = previous = rss_kib(pid)
        report.rows.append(
            {"state": "idle", "volumes so far": 0, "RSS MiB": idle / 1024, "vs idle": 1.0,
             "vs previous": 1.0}
        )  # fmt: skip
        for round_no in range(1, settings.rounds + 1):
            create_and_delete(daemon, settings.volumes, settings.callers)
            time.sleep(settings.settle_s)
            now = rss_kib(pid)
            report.rows.append(
                {
                    "state": f"after round {round_no}",
                    "volumes so far": round_no * settings.volumes,
                    "RSS MiB": now / 1024,
                    "vs idle": ratio(now, idle),
                    "vs previous": ratio(now, previous),
                }
            )
            report.ratios[f"rss_after_round{round_no}_over_idle"] = ratio(now, idle)
            if round_no > 1:
                report.ratios[f"rss_after_round{round_no}_over_round{round_no - 1}"] = ratio(
                    now, previous
                )
            previous = now
    report.notes.append(
        f"{settings.volumes} volumes created and deleted per round by {settings.callers} "
        "concurrent callers; a later round's growth over the one before is the leak signal"
    )
    return report
