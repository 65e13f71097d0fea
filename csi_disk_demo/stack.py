"""Run the emulator and a set of ``csi-disk serve`` processes on one machine.

Used by the demo and the end-to-end tests: one emulator, one controller, one node plugin
per emulated instance, each a separate process on its own socket, the way a cluster runs
them. Everything started here is stopped, unmounted and detached by ``close``, even
after a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from csi_disk.csi_pb import csi_pb2, csi_pb2_grpc
from csi_disk.host.mounts import read_mounts
from csi_disk_emulator.process import (
    EmulatorInfo,
    EmulatorInstance,
    dying_with_parent,
    start_emulator,
    stop_emulator,
    stop_process,
    wait_ready,
)

START_TIMEOUT = 60.0


@dataclass
class Plugin:
    """One ``csi-disk serve`` endpoint, its three CSI services as gRPC stubs."""

    endpoint: str  # unix:///path

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(self.endpoint)
        self.identity = csi_pb2_grpc.IdentityStub(self.channel)
        self.controller = csi_pb2_grpc.ControllerStub(self.channel)
        self.node = csi_pb2_grpc.NodeStub(self.channel)

    def close(self) -> None:
        self.channel.close()


class Stack:
    """Processes of one run, under ``state_dir``."""

    def __init__(self, state_dir: Path, *, latency_scale: float = 0.05, seed: int = 0) -> None:
        self.state_dir = state_dir
        self.latency_scale = latency_scale
        self.seed = seed
        self.logs = state_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.emulator: subprocess.Popen[bytes] | None = None
        self.info: EmulatorInfo | None = None
        self.daemons: dict[str, subprocess.Popen[bytes]] = {}
        self.plugins: dict[str, Plugin] = {}
        self._launches: dict[str, tuple[list[str], dict[str, str]]] = {}  # name -> args, env
        self._retired: list[Plugin] = []  # channels to daemons since restarted
        self._emulator_options: dict[str, object] = {}

    # ------------------------------------------------------------------ emulator

    def start_emulator(
        self,
        *,
        zones: int = 3,
        instances_per_zone: int = 2,
        topology: Mapping[str, Any] | None = None,
    ) -> EmulatorInfo:
        """The emulator with ``zones`` zones of ``instances_per_zone`` instances each, or the
        ``topology`` given (the emulator's topology file, docs/emulator.md)."""
        options: dict[str, Any] = {
            "zones": ",".join(f"cn-hangzhou-{c}" for c in "hijk"[:zones]),
            "instances_per_zone": instances_per_zone,
        }
        if topology is not None:
            path = self.state_dir / "topology.json"
            path.write_text(json.dumps(topology), encoding="utf-8")
            options = {"topology": path}
        self._emulator_options = {**options, "latency_scale": self.latency_scale, "seed": self.seed}
        return self._launch_emulator("127.0.0.1:0")

    def kill_emulator(self) -> None:
        """SIGKILL the emulator, as a cloud endpoint vanishes mid-call; its state, loop
        devices and port are kept for ``restart_emulator``."""
        if self.emulator is not None:
            self.emulator.kill()
            self.emulator.wait()

    def restart_emulator(self) -> EmulatorInfo:
        """Start the emulator again on its state and its port, so every endpoint the
        plugins were given answers again."""
        return self._launch_emulator(self._require_info().ecs_host)

    def _launch_emulator(self, listen: str) -> EmulatorInfo:
        emulator_dir = self.state_dir / "emulator"
        self.emulator = start_emulator(emulator_dir, listen=listen, **self._emulator_options)
        self.info = wait_ready(emulator_dir, self.emulator, timeout=START_TIMEOUT)
        return self.info

    # ------------------------------------------------------------------ daemons

    def _serve(self, name: str, args: list[str], env: dict[str, str]) -> Plugin:
        self._launches[name] = (args, env)
        return self._launch(name, env)

    def _launch(self, name: str, env: Mapping[str, str]) -> Plugin:
        args = self._launches[name][0]
        socket_path = self.state_dir / "sockets" / f"{name}.sock"
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        process = start_serve(
            socket_path, args, self.logs / f"{name}.log", {**environ_without_keys(), **env}
        )
        self.daemons[name] = process
        plugin = Plugin(f"unix://{socket_path}")
        self.plugins[name] = plugin
        return plugin

    def start_controller(self, attach_mode: str, *, name: str = "controller") -> Plugin:
        info = self._require_info()
        first = info.instances[0]
        return self._serve(
            name,
            [
                "--mode", "controller",
                "--attach-mode", attach_mode,
                "--ecs-endpoint", info.ecs_endpoint,
                "--metadata-endpoint", first.metadata_endpoint,
                "--region", info.region,
                "--operation-timeout", "120",
            ],
            {
                "ALIBABA_CLOUD_ACCESS_KEY_ID": info.access_key_id,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": info.access_key_secret,
            },
        )  # fmt: skip

    def kubelet_dir(self, instance_id: str) -> Path:
        path = self.state_dir / "nodes" / instance_id / "kubelet"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start_node(self, instance: EmulatorInstance, attach_mode: str) -> Plugin:
        """A node plugin that takes its credentials from the instance's RAM role."""
        info = self._require_info()
        return self._serve(
            f"node-{instance.id}",
            [
                "--mode", "node",
                "--attach-mode", attach_mode,
                "--ecs-endpoint", info.ecs_endpoint,
                "--metadata-endpoint", instance.metadata_endpoint,
                "--device-root", str(instance.device_root),
                "--kubelet-dir", str(self.kubelet_dir(instance.id)),
                "--operation-timeout", "120",
            ],
            {},
        )  # fmt: skip

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Every started plugin answers Probe with ready."""
        deadline = time.monotonic() + timeout
        for name, plugin in self.plugins.items():
            while True:
                process = self.daemons[name]
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited; see {self.logs / (name + '.log')}")
                try:
                    reply = plugin.identity.Probe(csi_pb2.ProbeRequest(), timeout=5)
                    if reply.ready.value:
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{name} not ready after {timeout:.0f}s; see {self.logs / (name + '.log')}"
                    )
                time.sleep(0.1)

    def kill(self, name: str) -> None:
        """SIGKILL a daemon, as a node crash or the OOM killer would: no drain, its mounts
        and its socket file left behind."""
        process = self.daemons[name]
        process.kill()
        process.wait()

    def restart(self, name: str, env: Mapping[str, str] | None = None) -> Plugin:
        """Start a daemon that died again with the flags it was started with, its
        environment plus ``env``; callers reach it through ``plugins[name]``, a new channel."""
        if self.daemons[name].poll() is None:
            raise RuntimeError(f"{name} is still running")
        old = self.plugins[name]  # replaced, never missing: other threads may be looking
        plugin = self._launch(name, {**self._launches[name][1], **(env or {})})
        self._retired.append(old)
        return plugin

    def stop_daemon(self, name: str) -> None:
        plugin = self.plugins.pop(name, None)
        if plugin is not None:
            plugin.close()
        process = self.daemons.pop(name, None)
        if process is not None:
            stop_process(process, timeout=60)

    def stop_daemons(self) -> None:
        for name in list(self.daemons):
            self.stop_daemon(name)
        for plugin in self._retired:
            plugin.close()
        self._retired.clear()

    # ------------------------------------------------------------------ teardown

    def close(self) -> None:
        """Stop everything; unmount and detach whatever is left under the state dir."""
        self.stop_daemons()
        if self.emulator is not None:
            stop_emulator(self.emulator, timeout=60)
        sweep(self.state_dir)

    def _require_info(self) -> EmulatorInfo:
        if self.info is None:
            raise RuntimeError("start the emulator first")
        return self.info

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def environ_without_keys() -> dict[str, str]:
    """This process's environment without ``ALIBABA_CLOUD_*``: a daemon gets only the
    credentials it is handed, so a key in the caller's shell cannot hide a broken path."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}


def serve_command(socket_path: Path, *args: str) -> list[str]:
    """``csi-disk serve`` on a unix socket, run by this interpreter (so from this checkout)."""
    return [sys.executable, "-m", "csi_disk", "serve", "--endpoint", f"unix://{socket_path}", *args]


def start_serve(
    socket_path: Path, args: Sequence[str], log_path: Path, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """Start ``csi-disk serve`` with exactly ``env``, its output appended to ``log_path``;
    it does not wait for the socket (callers wait in the way their checks need)."""
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            dying_with_parent(serve_command(socket_path, *args)),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=dict(env),
        )


def leftovers(directory: Path) -> tuple[list[str], list[str]]:
    """Mount points under ``directory`` (deepest first) and the loop devices whose backing
    files lie under it; looked at, not touched."""
    prefix = str(directory.resolve())
    try:
        table = read_mounts()
    except OSError:
        table = []
    mounts = {
        m.mount_point
        for m in table
        if m.mount_point == prefix or m.mount_point.startswith(prefix + "/")
    }
    loops: list[str] = []
    listing = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    for line in listing.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[1].strip().startswith(prefix):
            loops.append(parts[0])
    return sorted(mounts, key=lambda p: p.count("/"), reverse=True), loops


def sweep(directory: Path) -> tuple[list[str], list[str]]:
    """Unmount everything under ``directory`` (deepest first), detach its loop devices.

    Returns what had been left, so callers can report a leak.
    """
    mounts, loops = leftovers(directory)
    for point in mounts:
        subprocess.run(["umount", point], capture_output=True, check=False)
    for loop in loops:
        subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)
    return mounts, loops
