"""Interceptor overhead: Identity calls per second through the daemon's ``Server`` (with the
one interceptor: request id, redacted request/reply logging, metrics, error mapping) vs a
bare gRPC server serving the same IdentityService.

The livenessprobe sidecar calls Probe every few seconds and the provisioner calls
GetPluginInfo on start, so this overhead is never on a hot path; the number is here so a
change that makes every call expensive (say, formatting logs that are then dropped) shows.
Both servers and the clients live in this process on unix sockets, sharing one GIL.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.common import Report, ratio
from csi_disk import DRIVER_NAME, __version__
from csi_disk.csi_pb import csi_pb2, csi_pb2_grpc
from csi_disk.identity import IdentityService, Readiness
from csi_disk.server import Server

WORKERS = 16


@dataclass(frozen=True)
class Settings:
    callers: tuple[int, ...]
    rounds: int  # alternating rounds; the median is reported
    seconds: float  # length of one measurement


FULL = Settings(callers=(1, 8), rounds=3, seconds=0.75)
QUICK = Settings(callers=(1, 4), rounds=1, seconds=0.2)


def _identity() -> IdentityService:
    readiness = Readiness()
    readiness.set()
    return IdentityService(name=DRIVER_NAME, version=__version__, readiness=readiness)


@contextmanager
def daemon_server(socket_path: Path) -> Iterator[str]:
    """The daemon's own Server class, interceptor included."""
    server = Server(f"unix://{socket_path}", WORKERS)
    csi_pb2_grpc.add_IdentityServicer_to_server(_identity(), server.grpc_server)
    server.start()
    try:
        yield f"unix://{socket_path}"
    finally:
        server.stop(0)


@contextmanager
def bare_server(socket_path: Path) -> Iterator[str]:
    """The same service and thread pool, without the interceptor."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=WORKERS), options=[("grpc.so_reuseport", 0)]
    )
    csi_pb2_grpc.add_IdentityServicer_to_server(_identity(), server)
    if server.add_insecure_port(f"unix://{socket_path}") == 0:
        raise OSError(f"cannot listen on {socket_path}")
    server.start()
    try:
        yield f"unix://{socket_path}"
    finally:
        server.stop(0).wait(5)


def _calls(stub: csi_pb2_grpc.IdentityStub, method: str) -> Callable[[], object]:
    if method == "Probe":
        return lambda: stub.Probe(csi_pb2.ProbeRequest(), timeout=10)
    return lambda: stub.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=10)


def calls_per_second(target: str, method: str, callers: int, seconds: float) -> float:
    """Completed calls per second with ``callers`` threads calling back to back."""
    with grpc.insecure_channel(target) as channel:
        call = _calls(csi_pb2_grpc.IdentityStub(channel), method)
        call()  # connect before the clock starts
        counts = [0] * callers
        start = threading.Barrier(callers + 1)
        deadline = [0.0]

        def worker(slot: int) -> None:
            start.wait()
            while time.monotonic() < deadline[0]:
                call()
                counts[slot] += 1

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(callers)]
        for t in threads:
            t.start()
        began = time.monotonic()
        deadline[0] = began + seconds
        start.wait()
        for t in threads:
            t.join()
        return sum(counts) / (time.monotonic() - began)


def run(workdir: Path, quick: bool) -> Report:
    settings = QUICK if quick else FULL
    report = Report(
        name="interceptor",
        title="Interceptor overhead: Identity calls/s, daemon Server vs bare gRPC server",
        columns=[
            "method",
            "callers",
            "bare calls/s",
            "daemon calls/s",
            "bare/daemon",
            "overhead us/call",
        ],
    )
    workdir.mkdir(parents=True, exist_ok=True)
    with (
        daemon_server(workdir / "daemon.sock") as daemon,
        bare_server(workdir / "bare.sock") as bare,
    ):
        for method in ("GetPluginInfo", "Probe"):
            for callers in settings.callers:
                bare_rates: list[float] = []
                daemon_rates: list[float] = []
                for _ in range(settings.rounds):  # alternate so drift hits both alike
                    bare_rates.append(calls_per_second(bare, method, callers, settings.seconds))
                    daemon_rates.append(calls_per_second(daemon, method, callers, settings.seconds))
                bare_rate = statistics.median(bare_rates)
                daemon_rate = statistics.median(daemon_rates)
                slowdown = ratio(bare_rate, daemon_rate)
                overhead = (1 / daemon_rate - 1 / bare_rate) * 1e6 * callers
                report.rows.append(
                    {
                        "method": method,
                        "callers": callers,
                        "bare calls/s": bare_rate,
                        "daemon calls/s": daemon_rate,
                        "bare/daemon": slowdown,
                        "overhead us/call": overhead,
                    }
                )
                report.ratios[f"{method}_{callers}_callers_bare_over_daemon"] = slowdown
    report.notes.append(
        "server and client share this process's GIL; overhead us/call is the extra time per "
        "call seen by one caller"
    )
    return report
