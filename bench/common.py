"""What every benchmark shares: the report shape, percentiles, RSS, and the processes
(the ECS emulator, ``csi-disk serve``) a benchmark runs against."""

from __future__ import annotations

import math
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from csi_disk.csi_pb import csi_pb2, csi_pb2_grpc
from csi_disk_demo.stack import environ_without_keys, start_serve
from csi_disk_emulator.process import EmulatorInfo, running_emulator, stop_process

READY_TIMEOUT = 60.0

Cell = int | float | str


@dataclass
class Report:
    """One benchmark's outcome: a table of measurements and the ratios that matter.

    Ratios compare two things measured in the same run, so they mean the same on a laptop
    and on a CI runner; the absolute numbers in ``rows`` only describe this machine.
    """

    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Cell]] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: a ratio over a zero baseline becomes null rather than ``Infinity``."""
        data = asdict(self)
        data["ratios"] = {k: (v if math.isfinite(v) else None) for k, v in self.ratios.items()}
        return data

    def render(self) -> str:
        """A plain-text table, the ratios, and the notes."""
        cells = [[_fmt(row.get(c, "")) for c in self.columns] for row in self.rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]
        lines = [f"== {self.title} ({self.seconds:.1f}s)"]
        lines.append("  ".join(c.rjust(w) for c, w in zip(self.columns, widths, strict=True)))
        lines.append("  ".join("-" * w for w in widths))
        for row in cells:
            lines.append("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
        for key, value in self.ratios.items():
            lines.append(f"ratio {key}: {value:.2f}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _fmt(value: Cell) -> str:
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; infinite rather than an error when the baseline is 0."""
    if denominator == 0:
        return math.inf if numerator else 1.0
    return numerator / denominator


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"process {pid} reports no VmRSS")


# --- processes ------------------------------------------------------------------------------


@contextmanager
def emulator(
    state_dir: Path, latency_scale: float, seed: int, **options: Any
) -> Iterator[EmulatorInfo]:
    """The ECS emulator on loopback without block devices: the controller never needs one.

    ``options`` are more emulator flags (``api_quotas="*=0"`` -> ``--api-quotas *=0``)."""
    with running_emulator(
        state_dir,
        listen="127.0.0.1:0",
        latency_scale=latency_scale,
        seed=seed,
        block_devices="off",
        **options,
    ) as info:
        yield info


@dataclass
class Daemon:
    """A ``csi-disk serve`` process and a channel to its socket."""

    process: subprocess.Popen[bytes]
    channel: grpc.Channel
    log_path: Path

    @property
    def identity(self) -> csi_pb2_grpc.IdentityStub:
        return csi_pb2_grpc.IdentityStub(self.channel)

    @property
    def controller(self) -> csi_pb2_grpc.ControllerStub:
        return csi_pb2_grpc.ControllerStub(self.channel)


def ak_env(info: EmulatorInfo) -> dict[str, str]:
    return {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": info.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": info.access_key_secret,
    }


def serve_args(info: EmulatorInfo, mode: str, directory: Path) -> list[str]:
    """Flags for a daemon on the emulator; the node part plays the emulator's first instance."""
    first = info.instances[0]
    args = [
        "--mode", mode,
        "--attach-mode", "node",
        "--ecs-endpoint", info.ecs_endpoint,
        "--metadata-endpoint", first.metadata_endpoint,
        "--region", info.region,
        "--operation-timeout", "120",
    ]  # fmt: skip
    if mode in ("all", "node"):
        kubelet = directory / "kubelet"
        kubelet.mkdir(parents=True, exist_ok=True)
        args += ["--device-root", first.device_root, "--kubelet-dir", str(kubelet)]
    return args


def run_together(info: EmulatorInfo, threads: int, work: Callable[[int], None]) -> float:
    """``work(i)`` on ``threads`` threads released at once, after the emulator's call counters
    are reset; seconds from release until the last one finished.

    Threads start and park at a barrier first, so their start-up is neither timed nor counted.
    """
    barrier = threading.Barrier(threads + 1)

    def parked(i: int) -> None:
        barrier.wait()
        work(i)

    started = [threading.Thread(target=parked, args=(i,), daemon=True) for i in range(threads)]
    for t in started:
        t.start()
    info.admin("POST", "calls/reset")
    began = time.monotonic()
    barrier.wait()
    for t in started:
        t.join()
    return time.monotonic() - began


@contextmanager
def serving(
    directory: Path, name: str, args: Sequence[str], env: dict[str, str]
) -> Iterator[Daemon]:
    """Start ``csi-disk serve`` on a unix socket in ``directory``; yield once Probe is ready."""
    directory.mkdir(parents=True, exist_ok=True)
    socket_path = directory / f"{name}.sock"
    log_path = directory / f"{name}.log"
    process = start_serve(socket_path, args, log_path, {**environ_without_keys(), **env})
    channel = grpc.insecure_channel(f"unix://{socket_path}")
    try:
        daemon = Daemon(process, channel, log_path)
        _wait_ready(daemon)
        yield daemon
    finally:
        channel.close()
        stop_process(process, timeout=30)


def _wait_ready(daemon: Daemon) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if daemon.process.poll() is not None:
            raise RuntimeError(f"csi-disk serve exited; see {daemon.log_path}")
        try:
            if daemon.identity.Probe(csi_pb2.ProbeRequest(), timeout=2).ready.value:
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"csi-disk serve not ready after {READY_TIMEOUT:.0f}s")
        time.sleep(0.05)


def work_through(
    workers: int, count: int, call: Callable[[int], object], what: str = "calls"
) -> float:
    """``workers`` threads call ``call`` for each index below ``count``; seconds until the
    last is done. A failure ends its thread and is raised after the run, not lost in it."""
    lock = threading.Lock()
    next_index = [0]
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            with lock:
                index = next_index[0]
                next_index[0] += 1
            if index >= count:
                return
            try:
                call(index)
            except BaseException as err:
                with lock:
                    errors.append(err)
                return

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} {what} failed; first: {errors[0]!r}")
    return time.monotonic() - began
