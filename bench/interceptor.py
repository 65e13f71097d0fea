"""Interceptor overhead: the cheap calls (GetPluginInfo, Probe, NodeGetInfo) through the
daemon's ``Server``, with its one interceptor, vs a bare gRPC server serving the same
IdentityService and NodeService: p50 latency of one caller, and calls per second.

The livenessprobe calls Probe every few seconds, the registrar and the sidecars call
GetPluginInfo, the kubelet NodeGetInfo: none is a hot path, but they are the calls whose
cost is nearly all overhead, so a change that makes every call expensive (say, formatting
logs that are then dropped) shows here first. Both servers and the clients live in this
process on unix sockets, sharing one GIL.
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

from bench.common import Report, percentile, ratio
from csi_disk import DRIVER_NAME, __version__
from csi_disk.config import Config
from csi_disk.csi_pb import csi_pb2, csi_pb2_grpc
from csi_disk.identity import IdentityService, Readiness
from csi_disk.node import NodeService
from csi_disk.server import Server

WORKERS = 16


@dataclass(frozen=True)
class Settings:
    callers: tuple[int, ...]
    rounds: int  # alternating rounds; the median is reported
    seconds: float  # length of one measurement
    samples: int  # sequential calls timed one by one for the p50


FULL = Settings(callers=(1, 8), rounds=3, seconds=0.75, samples=2000)
QUICK = Settings(callers=(1, 4), rounds=1, seconds=0.2, samples=100)
METHODS = ("GetPluginInfo", "Probe", "NodeGetInfo")


def _serve_services(server: grpc.Server) -> None:
    """The daemon's own Identity and Node services, the node's facts known at start."""
    readiness = Readiness()
    readiness.set()
    identity = IdentityService(name=DRIVER_NAME, version=__version__, readiness=readiness)
    node = NodeService(
        Config(attach_mode="controller"),
        instance_id="i-bench0000000000000",
        zone="cn-hangzhou-h",
        region="cn-hangzhou",
        max_volumes_per_node=15,
    )
    csi_pb2_grpc.add_IdentityServicer_to_server(identity, server)
    csi_pb2_grpc.add_NodeServicer_to_server(node, server)


@contextmanager
def daemon_server(socket_path: Path) -> Iterator[str]:
    """The daemon's own Server class, interceptor included."""
    server = Server(f"unix://{socket_path}", WORKERS)
    _serve_services(server.grpc_server)
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
    _serve_services(server)
    if server.add_insecure_port(f"unix://{socket_path}") == 0:
        raise OSError(f"cannot listen on {socket_path}")
    server.start()
    try:
        yield f"unix://{socket_path}"
    finally:
        server.stop(0).wait(5)


def _calls(channel: grpc.Channel, method: str) -> Callable[[], object]:
    identity = csi_pb2_grpc.IdentityStub(channel)
    node = csi_pb2_grpc.NodeStub(channel)
    if method == "Probe":
        return lambda: identity.Probe(csi_pb2.ProbeRequest(), timeout=10)
    if method == "NodeGetInfo":
        return lambda: node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=10)
    return lambda: identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=10)


def p50_latency(target: str, method: str, samples: int) -> float:
    """Median seconds of ``samples`` calls made one after another by one caller."""
    with grpc.insecure_channel(target) as channel:
        call = _calls(channel, method)
        call()  # connect before the clock starts
        times: list[float] = []
        for _ in range(samples):
            began = time.perf_counter()
            call()
            times.append(time.perf_counter() - began)
        return percentile(times, 0.5)


def calls_per_second(target: str, method: str, callers: int, seconds: float) -> float:
    """Completed calls per second with ``callers`` threads calling back to back."""
    with grpc.insecure_channel(target) as channel:
        call = _calls(channel, method)
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
        title="Interceptor overhead: cheap calls, daemon Server vs bare gRPC server",
        columns=[
            "method",
            "callers",
            "bare p50 us",
            "daemon p50 us",
            "daemon/bare p50",
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
        for method in METHODS:
            bare_p50s: list[float] = []
            daemon_p50s: list[float] = []
            for _ in range(settings.rounds):  # alternate so drift hits both alike
                bare_p50s.append(p50_latency(bare, method, settings.samples))
                daemon_p50s.append(p50_latency(daemon, method, settings.samples))
            bare_p50 = statistics.median(bare_p50s)
            daemon_p50 = statistics.median(daemon_p50s)
            report.ratios[f"{method}_p50_daemon_over_bare"] = ratio(daemon_p50, bare_p50)
            for callers in settings.callers:
                bare_rates: list[float] = []
                daemon_rates: list[float] = []
                for _ in range(settings.rounds):
                    bare_rates.append(calls_per_second(bare, method, callers, settings.seconds))
                    daemon_rates.append(calls_per_second(daemon, method, callers, settings.seconds))
                bare_rate = statistics.median(bare_rates)
                daemon_rate = statistics.median(daemon_rates)
                slowdown = ratio(bare_rate, daemon_rate)
                overhead = (1 / daemon_rate - 1 / bare_rate) * 1e6 * callers
                sequential = callers == 1
                report.rows.append(
                    {
                        "method": method,
                        "callers": callers,
                        "bare p50 us": bare_p50 * 1e6 if sequential else "",
                        "daemon p50 us": daemon_p50 * 1e6 if sequential else "",
                        "daemon/bare p50": ratio(daemon_p50, bare_p50) if sequential else "",
                        "bare calls/s": bare_rate,
                        "daemon calls/s": daemon_rate,
                        "bare/daemon": slowdown,
                        "overhead us/call": overhead,
                    }
                )
                report.ratios[f"{method}_{callers}_callers_bare_over_daemon"] = slowdown
    report.notes.append(
        "server and client share this process's GIL; p50 is one caller's calls one after "
        "another; overhead us/call is the extra time per call seen by one caller"
    )
    return report
