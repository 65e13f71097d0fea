"""Seeded churn: volumes go through their whole life while the controller, the node plugins
and the emulator are killed at random moments, node plugins come back with a failpoint
armed, and the emulator answers a share of its calls with throttling and 5xx errors.

One run per attach mode, each on its own emulator, controller and two node plugins in one
zone (``csi_disk_demo.stack``). A stand-in for the sidecars and the kubelet (``sidecars.py``,
a process of its own) drives each volume as they would, repeating a call while it answers a
retryable code: create; then on each of the two nodes in turn attach (controller mode),
stage, publish, write (first node) or read back (second), unpublish, unstage, detach; then
delete. The seed (``CSI_DISK_CHURN_SEED``)
fixes the schedule: which node a volume visits first and the bytes it writes, each kill's
moment, target and downtime, the failpoint a restarted node plugin arms, the emulator's fault
draws. The threads' interleaving is not fixed; a failure prints the schedule that ran.
Run alone with ``pytest -m churn -s``; it is sized to about 40 s per mode on two cores.

Everything is checked from outside the driver (the emulator's records, the mount table,
losetup, the bytes on the filesystem): a name has exactly one disk while it lives and none
after; data written on one node reads back whole on the other; after each unpublish and
unstage the path is no mount, after each detach the emulator lists no attachment; at the
end no disk, attachment, mount or loop device is left, and every process that died was
killed (by the test or by its armed failpoint), none crashed.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from csi_disk.failpoints import ENV_VAR
from csi_disk_demo.stack import Stack, leftovers
from tests.conftest import REPO_ROOT, require_root

pytestmark = [pytest.mark.root, pytest.mark.churn, pytest.mark.timeout(240)]

SEED = int(os.environ.get("CSI_DISK_CHURN_SEED", "13"))
VOLUMES = 20  # per attach mode
WORKERS = 5  # volumes in flight at once
CALL_TIMEOUT = 30.0  # each CSI call's deadline
STEP_BUDGET = 90.0  # how long one step may go on failing retryably before the run fails
GAP = (0.6, 1.6)  # seconds between two kills
DOWNTIME = (0.0, 0.8)  # seconds a killed process stays down
ARM_RATE = 0.5  # share of node plugin restarts that arm a failpoint

# A share of calls answered as an overloaded or failing ECS answers them; the emulator draws
# from its seed, and a specific action's fault goes before the "*" one.
FAULTS = [
    {"action": "*", "code": "Throttling.User", "rate": 0.06},
    {"action": "CreateDisk", "code": "ServiceUnavailable", "rate": 0.15},
    {"action": "AttachDisk", "code": "InternalError", "rate": 0.15},
    {"action": "DetachDisk", "code": "ServiceUnavailable", "rate": 0.15},
    {"action": "DeleteDisk", "code": "InternalError", "rate": 0.15},
    {"action": "DescribeDisks", "code": "Throttling", "rate": 0.12},
]


def failpoints_in_code() -> list[str]:
    """Every point the driver can be armed to die at, as the code names them: a new one
    joins the churn without a change here."""
    found: set[str] = set()
    for path in (REPO_ROOT / "csi_disk").rglob("*.py"):
        found.update(re.findall(r'failpoint\("([^"]+)"\)', path.read_text(encoding="utf-8")))
    return sorted(found)


def faults_met(stack: Stack) -> Counter[str]:
    """How often the plugins' logs name each injected error code: proof the faults fired."""
    met: Counter[str] = Counter()
    for log in stack.logs.glob("*.log"):
        text = log.read_text(encoding="utf-8", errors="replace")
        for code in {f["code"] for f in FAULTS}:
            met[code] += len(re.findall(re.escape(code) + r"(?![.\w])", text))
    return met


class Chaos:
    """Kills a process at seeded moments and starts it again; restarts a node plugin that
    its armed failpoint killed. Each target is killed once before any twice.

    It runs in the test's main thread: a process is started with a parent-death signal,
    which Linux sends when the *thread* that started it ends.
    """

    def __init__(self, stack: Stack, mode: str, nodes: list[str]) -> None:
        self.stack = stack
        self.rng = random.Random(f"{SEED}:{mode}:chaos")
        self.targets = ["controller", *(f"node-{n}" for n in nodes), "emulator"]
        self.first_round = self.rng.sample(self.targets, len(self.targets))
        self.failpoints = failpoints_in_code()
        self.armed: dict[str, str] = {}
        self.log: list[str] = []  # what happened, in order, with the time into the run
        self.kills: Counter[str] = Counter()
        self.fired: Counter[str] = Counter()
        self.crashes: list[str] = []
        self.started = time.monotonic()

    def note(self, text: str) -> None:
        self.log.append(f"{time.monotonic() - self.started:6.1f}s {text}")

    def run_until(self, done: Callable[[], bool]) -> None:
        next_kill = time.monotonic() + self.rng.uniform(*GAP)
        while not done():
            time.sleep(0.05)
            self.revive()
            if time.monotonic() >= next_kill:
                target = self.first_round.pop(0) if self.first_round else None
                self.strike(target or self.rng.choice(self.targets))
                next_kill = time.monotonic() + self.rng.uniform(*GAP)

    def strike(self, target: str) -> None:
        downtime = self.rng.uniform(*DOWNTIME)
        arm = self.rng.random() < ARM_RATE and target.startswith("node-")
        point = self.rng.choice(self.failpoints) if arm else ""
        stack = self.stack
        self.kills[target] += 1
        self.note(f"kill {target}, down {downtime:.2f}s" + (f", back armed {point}" if arm else ""))
        if target == "emulator":
            stack.kill_emulator()
            time.sleep(downtime)
            stack.restart_emulator()
            return
        if stack.daemons[target].poll() is None:
            stack.kill(target)
        time.sleep(downtime)
        self.bring_back(target, point)

    def bring_back(self, target: str, point: str) -> None:
        self.armed[target] = point
        self.stack.restart(target, {ENV_VAR: point} if point else None)

    def revive(self) -> None:
        """A daemon that died on its own: its failpoint fired (SIGKILL) or it crashed."""
        for name in self.targets[:-1]:
            code = self.stack.daemons[name].poll()
            if code is None:
                continue
            point = self.armed.get(name, "")
            if point and code == -9:
                self.fired[point] += 1
                self.note(f"{name} died at failpoint {point}")
            else:
                self.crashes.append(f"{name} exited with {code}")
                self.note(f"{name} exited with {code}")
            self.bring_back(name, "")

    def finish(self) -> None:
        """Leave every process running unarmed."""
        self.revive()
        for name, point in list(self.armed.items()):
            if point:  # an armed point that never fired would fire in the checks
                self.stack.kill(name)
                self.bring_back(name, "")


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_root()
    # A short path: a unix socket's must fit in 107 bytes.
    with Stack(tmp_path_factory.mktemp("churn"), latency_scale=0.02, seed=SEED) as s:
        yield s


def start_sidecars(stack: Stack, mode: str) -> subprocess.Popen[str]:
    """The sidecars and kubelet (``sidecars.py``) in a process of their own."""
    info = stack.info
    assert info is not None
    nodes = [i.id for i in info.instances]
    plan = {
        "mode": mode,
        "seed": SEED,
        "volumes": VOLUMES,
        "workers": WORKERS,
        "zone": info.zones[0],
        "nodes": nodes,
        "endpoints": {name: plugin.endpoint for name, plugin in stack.plugins.items()},
        "kubelets": {n: str(stack.kubelet_dir(n)) for n in nodes},
        "admin": info.admin_endpoint,
        "call_timeout": CALL_TIMEOUT,
        "step_budget": STEP_BUDGET,
    }
    with open(stack.logs / "sidecars.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.churn.sidecars", json.dumps(plan)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )


@pytest.mark.parametrize("mode", ["node", "controller"])
def test_churn_loses_leaks_and_duplicates_nothing(stack: Stack, mode: str) -> None:
    info = stack.start_emulator(zones=1, instances_per_zone=2)
    for fault in FAULTS:
        info.admin("POST", "faults", fault)
    stack.start_controller(mode)
    for instance in info.instances:
        stack.start_node(instance, mode)
    stack.wait_ready()
    chaos = Chaos(stack, mode, [i.id for i in info.instances])
    started = time.monotonic()
    sidecars = start_sidecars(stack, mode)
    try:
        chaos.run_until(lambda: sidecars.poll() is not None)
    finally:
        if sidecars.poll() is None:
            sidecars.kill()
        chaos.finish()
    output = sidecars.communicate()[0]
    elapsed = time.monotonic() - started
    log = (stack.logs / "sidecars.log").read_text(errors="replace")
    assert sidecars.returncode == 0, (
        f"the sidecars exited with {sidecars.returncode}: {log[-3000:]}"
    )
    result = json.loads(output)
    schedule = "\n".join(chaos.log)
    met = faults_met(stack)
    calls = stack.info.calls() if stack.info else {}
    print(
        f"churn {mode} seed {SEED}: {VOLUMES} volumes in {elapsed:.1f}s; kills {dict(chaos.kills)};"
        f" failpoints fired {dict(chaos.fired)}; faults met {dict(met)};"
        f" retried {result['retries']}; ECS calls {sum(calls.values())}\n{schedule}"
    )
    failures = result["failures"]
    assert not failures, "\n".join(failures) + f"\nschedule (seed {SEED}):\n{schedule}"
    assert not chaos.crashes, f"{chaos.crashes}\nschedule (seed {SEED}):\n{schedule}"
    assert set(chaos.kills) == set(chaos.targets), "the run ended before each was killed once"
    assert sum(met.values()) > 0, "no injected fault reached the plugins"

    state = info.admin("GET", "disks")
    assert state["disks"] == [], f"disks left behind: {[d['id'] for d in state['disks']]}"
    assert state["attachments"] == []
    stack.stop_daemons()
    mounts, loops = leftovers(stack.state_dir)
    assert mounts == [] and loops == [], f"stale mounts {mounts}, loop devices {loops}"
