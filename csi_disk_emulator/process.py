"""Run the emulator as a subprocess: for tests and the demo.

with running_emulator(tmp_path / "ecs", latency_scale=0.01) as emu:
    client = AcsClient(emu.access_key_id, emu.access_key_secret, emu.region)
    ...
    emu.admin("GET", "/calls")
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class EmulatorInstance:
    id: str
    zone: str
    instance_type: str
    bus: str
    metadata_endpoint: str
    device_root: str
    ram_role: str


@dataclass
class EmulatorInfo:
    """The parsed emulator.json, plus the process and an admin API helper."""

    region: str
    ecs_endpoint: str
    access_key_id: str
    access_key_secret: str
    admin_endpoint: str
    zones: list[str]
    instances: list[EmulatorInstance]
    state_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def ecs_host(self) -> str:
        """host:port, the form ``request.set_endpoint`` takes."""
        return self.ecs_endpoint.split("://", 1)[1]

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """Call the admin API (``path`` relative to /admin); raises on non-2xx."""
        data = None if body is None else json.dumps(body).encode()
        if not self.admin_endpoint.startswith("http://"):
            raise ValueError("the admin endpoint must be http://")
        request = urllib.request.Request(  # noqa: S310 - scheme checked above
            self.admin_endpoint + "/" + path.lstrip("/"),
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - http only, checked above
            return json.loads(response.read() or b"{}")

    def calls(self) -> dict[str, int]:
        """Calls served per ECS action since start (or the last reset)."""
        return dict(self.admin("GET", "calls").get("calls", {}))

    def instances_in(self, zone: str) -> list[EmulatorInstance]:
        return [i for i in self.instances if i.zone == zone]


def read_info(state_dir: Path, process: subprocess.Popen[bytes] | None = None) -> EmulatorInfo:
    raw = json.loads((state_dir / "emulator.json").read_text(encoding="utf-8"))
    raw["instances"] = [EmulatorInstance(**i) for i in raw["instances"]]
    return EmulatorInfo(**raw, state_dir=state_dir, process=process)


def dying_with_parent(argv: Sequence[str]) -> list[str]:
    """``argv`` run so that it gets SIGTERM when its parent dies (PR_SET_PDEATHSIG).

    A test runner or demo killed outright would otherwise leave its emulator and plugins
    running, holding loop devices and mounts. util-linux's setpriv sets the signal and
    execs the program, which keeps the same pid; no Python runs between fork and exec, so
    grpcio's fork handlers never run in the child (grpc/grpc#43055).
    """
    return ["setpriv", "--pdeathsig", "TERM", "--", *argv]


def start_emulator(state_dir: Path, **options: Any) -> subprocess.Popen[bytes]:
    """Start the emulator process; options map to flags (``latency_scale=0.01`` ->
    ``--latency-scale 0.01``)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "emulator.json").unlink(missing_ok=True)
    argv = [sys.executable, "-m", "csi_disk_emulator", "--state-dir", str(state_dir)]
    for key, value in options.items():
        if value is None or value is False:
            continue
        argv.append("--" + key.replace("_", "-"))
        if value is not True:
            argv.append(str(value))
    log = open(state_dir / "emulator.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            dying_with_parent(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
    finally:
        log.close()


def wait_ready(
    state_dir: Path, process: subprocess.Popen[bytes], timeout: float = 30
) -> EmulatorInfo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (state_dir / "emulator.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"emulator exited with {process.returncode}: {tail}")
        if (state_dir / "emulator.json").exists():
            return read_info(state_dir, process)
        time.sleep(0.05)
    process.kill()
    raise TimeoutError(f"emulator did not become ready within {timeout}s")


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM, so the process finishes cleanly (the emulator releases its loop devices,
    ``csi-disk serve`` drains in-flight calls); SIGKILL only if it hangs past ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def stop_emulator(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """Stop the emulator; its exit code."""
    return stop_process(process, timeout)


@contextmanager
def running_emulator(state_dir: Path, **options: Any) -> Iterator[EmulatorInfo]:
    """Start the emulator, yield its info once emulator.json exists, stop it cleanly."""
    process = start_emulator(state_dir, **options)
    try:
        yield wait_ready(state_dir, process)
    finally:
        stop_emulator(process)


def admin_error(err: urllib.error.HTTPError) -> dict[str, Any]:
    """The JSON body of a failed admin call."""
    return dict(json.loads(err.read() or b"{}"))
