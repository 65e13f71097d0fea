"""Waiter batching: N concurrent waits for new disks, the shared DiskWaiter against the naive
loop every call would otherwise run (DescribeDisks on its own disk once per interval).

Each of N threads creates a disk through the real EcsCloud and waits for it to become
Available, as CreateVolume does; the emulator counts the DescribeDisks calls. The naive
loop costs about N * (Creating / interval + 1) calls; the waiter costs one call per 100
waited disks per interval, so an account's API budget no longer scales with the
provisioner's worker count.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import Report, emulator, percentile, ratio, run_together
from csi_disk.cloud import metrics, port
from csi_disk.cloud.credentials import Credentials, StaticProvider
from csi_disk.cloud.ecs import EcsCloud
from csi_disk.cloud.port import Disk, DiskRequest
from csi_disk.cloud.quotas import ApiQuotas
from csi_disk.cloud.waiter import DiskWaiter
from csi_disk_emulator.process import EmulatorInfo

WAIT_TIMEOUT = 120.0
# No client-side budget: it would otherwise pace the naive loop and hide how many calls
# it asks for.
NO_LIMIT = ApiQuotas({"*": 0})


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...]
    latency_scale: float  # Creating lasts this many seconds (the emulator's 1 s times scale)
    interval: float  # poll interval of both the waiter and the naive loop


FULL = Settings(sizes=(1, 10, 100, 500), latency_scale=1.5, interval=1.0)
QUICK = Settings(sizes=(1, 10), latency_scale=0.3, interval=0.2)


@dataclass
class Outcome:
    describe_calls: int
    failed_attempts: int  # ECS attempts the client saw fail (timeouts, refused): retried
    wall_s: float
    wait_p50_s: float


def failed_attempts() -> int:
    """ECS attempts in this process that did not answer OK, from the driver's own metrics."""
    total = 0.0
    for family in metrics.REQUESTS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("code") != "OK":
                total += sample.value
    return int(total)


def _available(disk: Disk | None) -> bool:
    return disk is not None and disk.status == port.AVAILABLE


def naive_wait(cloud: EcsCloud, disk_id: str, interval: float, timeout: float) -> None:
    """The baseline: each caller asks about its own disk once per interval."""
    deadline = time.monotonic() + timeout
    while True:
        found = cloud.describe_disks([disk_id])
        if found and _available(found[0]):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"disk {disk_id} not Available after {timeout:g}s")
        time.sleep(interval)


def _cloud(info: EmulatorInfo, pool: int) -> EcsCloud:
    return EcsCloud(
        info.region,
        StaticProvider(Credentials(info.access_key_id, info.access_key_secret)),
        endpoint=info.ecs_endpoint,
        quotas=NO_LIMIT,
        pool_size=pool,
    )


def _measure(
    info: EmulatorInfo, n: int, wait: Callable[[EcsCloud, str], None], cloud: EcsCloud
) -> Outcome:
    """N threads each create a disk and wait for it; DescribeDisks counted by the emulator."""
    zone = info.zones[0]
    run = uuid.uuid4().hex[:10]
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            disk_id = cloud.create_disk(
                DiskRequest(zone, "cloud_essd", 20, client_token=f"bench-{run}-{i}")
            )
            began = time.monotonic()
            wait(cloud, disk_id)
            with lock:
                latencies.append(time.monotonic() - began)
        except BaseException as err:  # reported after the run, not lost in a thread
            with lock:
                errors.append(err)

    failed_before = failed_attempts()
    wall = run_together(info, n, one)
    if errors:
        raise RuntimeError(f"{len(errors)} of {n} waits failed; first: {errors[0]!r}")
    calls = int(info.calls().get("DescribeDisks", 0))
    return Outcome(calls, failed_attempts() - failed_before, wall, percentile(latencies, 0.5))


def run(workdir: Path, quick: bool) -> Report:
    settings = QUICK if quick else FULL
    report = Report(
        name="waiter",
        title="Waiter batching: DescribeDisks per wait, shared DiskWaiter vs naive poll loop",
        columns=[
            "waits",
            "naive calls/wait",
            "waiter calls/wait",
            "calls ratio",
            "naive wall s",
            "waiter wall s",
            "wall ratio",
            "naive p50 s",
            "waiter p50 s",
            "naive failed",
            "waiter failed",
        ],
    )
    state = workdir / "ecs-waiter"
    with emulator(state, settings.latency_scale, seed=41, api_quotas="*=0") as info:
        for n in settings.sizes:
            cloud = _cloud(info, pool=max(128, n))
            cloud.probe()  # the SDK client and a connection exist before the clock starts
            waiter = DiskWaiter(cloud, interval=settings.interval)
            try:
                shared = _measure(
                    info,
                    n,
                    lambda _c, disk_id, w=waiter: _shared_wait(w, disk_id),
                    cloud,
                )
            finally:
                waiter.close()
            naive = _measure(
                info,
                n,
                lambda c, disk_id: naive_wait(c, disk_id, settings.interval, WAIT_TIMEOUT),
                cloud,
            )
            calls_ratio = ratio(naive.describe_calls, shared.describe_calls)
            wall_ratio = ratio(naive.wall_s, shared.wall_s)
            report.rows.append(
                {
                    "waits": n,
                    "naive calls/wait": naive.describe_calls / n,
                    "waiter calls/wait": shared.describe_calls / n,
                    "calls ratio": calls_ratio,
                    "naive wall s": naive.wall_s,
                    "waiter wall s": shared.wall_s,
                    "wall ratio": wall_ratio,
                    "naive p50 s": naive.wait_p50_s,
                    "waiter p50 s": shared.wait_p50_s,
                    "naive failed": naive.failed_attempts,
                    "waiter failed": shared.failed_attempts,
                }
            )
            report.ratios[f"describe_calls_naive_over_waiter_n{n}"] = calls_ratio
            report.ratios[f"wall_naive_over_waiter_n{n}"] = wall_ratio
    report.notes.append(
        f"Creating lasts {settings.latency_scale:g}s; both poll every {settings.interval:g}s; "
        "no client-side budget and no emulator quota, so neither paces either side"
    )
    report.notes.append(
        "failed: ECS attempts that timed out or were refused and were retried by the client "
        "(an overloaded endpoint); calls/wait counts what the emulator served"
    )
    return report


def _shared_wait(waiter: DiskWaiter, disk_id: str) -> None:
    waiter.wait(disk_id, _available, WAIT_TIMEOUT)
