"""Ctrl-C on a running cluster, and on the demo mid-story, leaves nothing behind: no process,
mount, loop device or listening port. And the demo, as a user runs it, passes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from csi_disk_demo.stack import leftovers
from tests.conftest import REPO_ROOT, require_root
from tests.e2e.kubernetes.story import alive, host_listeners, listening_on

pytestmark = [pytest.mark.root, pytest.mark.kubernetes, pytest.mark.timeout(300)]


def descendants(pid: int) -> set[int]:
    """Every living process under ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                parent = int(f.read().rsplit(") ", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def test_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    require_root()
    state = tmp_path / "kube"
    with open(tmp_path / "out.log", "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "csi_disk_demo.kube", "--state-dir", str(state)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
    try:
        deadline = time.monotonic() + 150
        while b"cluster ready" not in (tmp_path / "out.log").read_bytes():
            assert process.poll() is None, (tmp_path / "out.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the cluster did not come up"
            time.sleep(0.5)
        pids = descendants(process.pid)
        ports = {port for _, _, port in host_listeners(pids)}
        assert len(pids) >= 15 and ports
        words = (tmp_path / "out.log").read_text().replace(";", " ").split()
        runtime = [Path(w) for w in words if "/csi-kube-" in w]
        assert runtime, "the runtime folder is not printed"
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground job
        assert process.wait(120) == 0, (tmp_path / "out.log").read_text()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert not [p for p in pids if alive(p)], "processes outlived Ctrl-C"
    assert not [p for p in ports if listening_on(p)], "ports still listened on"
    mounts, loops = leftovers(tmp_path)
    assert not mounts and not loops
    for folder in runtime:
        assert leftovers(folder) == ([], [])
        assert not folder.exists(), f"{folder} left behind"


def test_demo_command_succeeds(tmp_path: Path) -> None:
    """The README's main command, as a user runs it."""
    require_root()
    result = subprocess.run(
        [sys.executable, "-m", "csi_disk", "demo", "--state-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=280, cwd=REPO_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "checks passed." in result.stdout
    assert "FAIL" not in result.stdout
    for shown in ("$ kubectl get pvc disk-pvc", "volume.kubernetes.io/selected-node: ",
                  "lost+found\ntest", "NotReady", "DISKTYPE.CLOUD_ESSD_ENTRY"):  # fmt: skip
        assert shown in result.stdout
    capacities = [line.split() for line in result.stdout.splitlines()
                  if line.startswith("alicloud-disk-entry ")]  # fmt: skip
    assert sorted(c[2] for c in capacities) == ["0"] * 6 + ["1Pi"], capacities
    assert leftovers(tmp_path) == ([], [])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_demo_cleans_up(tmp_path: Path, signum: int) -> None:
    """Stopped with a disk staged and published, the demo leaves nothing running or mounted."""
    require_root()
    process = subprocess.Popen(
        [sys.executable, "-m", "csi_disk", "demo", "--state-dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT,
    )  # fmt: skip
    assert process.stdout is not None
    seen = []
    pids: set[int] = set()
    for line in process.stdout:
        seen.append(line)
        if "the pod mounts the disk and writes to it" in line:
            pids = descendants(process.pid)
            break
    assert pids, "".join(seen)[-3000:]
    ports = {port for _, _, port in host_listeners(pids)}
    process.send_signal(signum)
    rest, _ = process.communicate(timeout=120)
    output = "".join(seen) + rest
    assert process.returncode == 1, output[-3000:]
    assert "interrupted" in output
    assert not [p for p in pids if alive(p)], "processes outlived the demo"
    assert not [p for p in ports if listening_on(p)], "ports still listened on"
    assert leftovers(tmp_path) == ([], [])
    assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if "/csi-kube-" in line], "mounts left in a cluster's runtime folder"  # fmt: skip
