"""Shared test harness: root-only tests, loop devices, mounts and leak checks.

Tests marked ``root`` need root, loop devices and mount(8). Outside CI they skip with the
reason printed; in CI (``CI=true``) a missing capability fails them, so a green CI run
means they really ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from csi_disk_demo.stack import leftovers, sweep

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=100, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

IN_CI = os.environ.get("CI") == "true"
MAX_LOOP_DEVICES = 32
REPO_ROOT = Path(__file__).resolve().parent.parent


def root_unavailable_reason() -> str | None:
    """Why root-only tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root"
    if not Path("/dev/loop-control").exists():
        return "needs /dev/loop-control (loop devices)"
    for tool in ("losetup", "mount", "umount", "blkid", "mkfs.ext4", "mkfs.xfs", "findmnt"):
        if shutil.which(tool) is None:
            return f"needs {tool} on PATH (run .ci/setup)"
    return None


def require_root() -> None:
    """Fail in CI, skip with the reason printed elsewhere, when root-only work cannot run.

    For fixtures that need root themselves: a session fixture that skipped would skip every
    test using it, CI included.
    """
    reason = root_unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"root-only test cannot run in CI: {reason}")
    print(f"skipping: {reason}", file=sys.stderr)
    pytest.skip(reason)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = root_unavailable_reason()
    if reason is None or IN_CI:
        return
    for item in items:
        if item.get_closest_marker("root") is not None:
            print(f"skipping {item.nodeid}: {reason}", file=sys.stderr)
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """In CI a root-only test that cannot run fails here, before any of its fixtures (a
    session fixture that skips would otherwise turn the failure into a skip)."""
    if IN_CI and item.get_closest_marker("root") is not None:
        reason = root_unavailable_reason()
        if reason is not None:
            pytest.fail(f"root-only test cannot run in CI: {reason}")


def _mounts_under(directory: Path) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    prefix = str(directory)
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def cleanup_host_state(directory: Path) -> tuple[list[str], list[str]]:
    """Unmount everything under ``directory`` (deepest first) and detach its loop devices.

    Returns what was left behind, so callers can fail on leaks after cleaning up.
    """
    return sweep(directory)


@pytest.fixture
def host_dir(tmp_path: Path) -> Iterator[Path]:
    """A scratch directory whose mounts and loop devices must be gone when the test ends.

    Anything the test leaves behind is cleaned up deepest-first and then reported as a
    failure, so a leak in the code under test cannot hide behind the harness.
    """
    require_root()
    yield tmp_path
    mounts, loops = cleanup_host_state(tmp_path)
    if mounts or loops:
        pytest.fail(f"test leaked mounts {mounts} and loop devices {loops}")


@pytest.fixture
def loop_device(host_dir: Path) -> Iterator[Callable[..., str]]:
    """Factory: ``loop_device(size_mib=64)`` returns a fresh loop device on a sparse file."""
    created: list[str] = []

    def make(size_mib: int = 64) -> str:
        if len(created) >= MAX_LOOP_DEVICES:
            raise RuntimeError(f"test asked for more than {MAX_LOOP_DEVICES} loop devices")
        backing = host_dir / f"loop-backing-{len(created)}.img"
        with open(backing, "wb") as f:
            f.truncate(size_mib * 1024 * 1024)
        dev = subprocess.run(
            ["losetup", "--find", "--show", str(backing)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        created.append(dev)
        return dev

    yield make
    for target in sorted(_mounts_under(host_dir), key=lambda p: p.count("/"), reverse=True):
        subprocess.run(["umount", target], capture_output=True, check=False)
    for dev in reversed(created):
        subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)
    # A loop device someone still holds open (a udev probe, say) is only marked to detach
    # on its last close: give that close a moment before host_dir calls it a leak.
    deadline = time.monotonic() + 5
    while leftovers(host_dir)[1] and time.monotonic() < deadline:
        time.sleep(0.05)
