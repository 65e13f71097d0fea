"""Start ``csi-disk serve`` as a real process and talk to it over its socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from csi_disk.csi_pb import csi_pb2, csi_pb2_grpc
from csi_disk_demo.stack import start_serve
from csi_disk_emulator.process import stop_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    socket_path: Path
    log_path: Path
    channel: grpc.Channel

    @property
    def identity(self) -> csi_pb2_grpc.IdentityStub:
        return csi_pb2_grpc.IdentityStub(self.channel)

    @property
    def controller(self) -> csi_pb2_grpc.ControllerStub:
        return csi_pb2_grpc.ControllerStub(self.channel)

    @property
    def node(self) -> csi_pb2_grpc.NodeStub:
        return csi_pb2_grpc.NodeStub(self.channel)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def probe(self) -> bool:
        reply = self.identity.Probe(csi_pb2.ProbeRequest(), timeout=5)
        return reply.ready.value

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.probe():
                return
            time.sleep(0.1)
        raise AssertionError(f"daemon not ready after {timeout}s; log:\n{self.log()[-3000:]}")

    def terminate(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


@contextmanager
def running_daemon(
    socket_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    wait_socket: float = 20.0,
) -> Iterator[Daemon]:
    """Start a daemon, wait for its socket, yield it; stop it and close the channel after."""
    log_path = log_path or socket_path.with_suffix(".log")
    process = start_serve(socket_path, args, log_path, {**os.environ, **(env or {})})
    deadline = time.monotonic() + wait_socket
    while not socket_path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(
                f"daemon did not create {socket_path}; log:\n{log_path.read_text()[-3000:]}"
            )
        time.sleep(0.05)
    channel = grpc.insecure_channel(f"unix://{socket_path}")
    try:
        grpc.channel_ready_future(channel).result(timeout=max(1.0, deadline - time.monotonic()))
    except grpc.FutureTimeoutError:
        process.kill()
        channel.close()
        raise AssertionError(
            f"daemon never answered on {socket_path}; log:\n{log_path.read_text()[-3000:]}"
        ) from None
    daemon = Daemon(process, socket_path, log_path, channel)
    try:
        yield daemon
    finally:
        channel.close()
        stop_process(process, timeout=30)


def flags(**values: object) -> Sequence[str]:
    """``flags(attach_mode="node")`` -> ``["--attach-mode", "node"]``."""
    out: list[str] = []
    for key, value in values.items():
        out += [f"--{key.replace('_', '-')}", str(value)]
    return out
