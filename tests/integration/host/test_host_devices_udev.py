"""Disk lookup through the machine's own udev database, the path a real node takes when
neither a /dev/disk/by-id link nor a sysfs serial names the disk.

A loop device has no serial, so a udev rule gives it one (ID_SERIAL, as udev's
persistent-storage rules set it for virtio and NVMe disks); nothing but udev's database can
then find it. Without a running systemd-udevd the test starts one for itself and stops it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from csi_disk.host.devices import DeviceFinder
from tests.conftest import IN_CI
from tests.waiting import wait_until

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

UDEVD = Path("/lib/systemd/systemd-udevd")
RULES = Path("/run/udev/rules.d")
LOCK = Path("/run/lock/csi-disk-udev-test.lock")


def udevadm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["udevadm", *args], capture_output=True, text=True, timeout=60, check=check
    )


def cannot_run(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"udev test cannot run in CI: {reason}")
    print(f"skipping udev test: {reason}", file=sys.stderr)
    pytest.skip(reason)


def udevd_answers() -> bool:
    return udevadm("control", "--ping", "--timeout=2", check=False).returncode == 0


@pytest.fixture
def udev() -> Iterator[None]:
    """A running systemd-udevd: the machine's own, else one started (and stopped) here.

    Other checkouts on the machine may run this test at the same time: a lock serialises
    them, so one never stops a udevd another is using.
    """
    if shutil.which("udevadm") is None:
        cannot_run("needs udevadm (the udev package; run .ci/setup)")
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if udevd_answers():
            yield
            return
        if not UDEVD.exists():
            cannot_run(f"no udev daemon runs and {UDEVD} is missing")
        made = [p for p in (Path("/run/udev"), Path("/dev/disk")) if not p.exists()]
        daemon = subprocess.Popen(
            [str(UDEVD)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_until(lambda: udevd_answers() or daemon.poll() is not None, "udevd started")
            if daemon.poll() is not None:
                cannot_run(f"{UDEVD} exited with {daemon.returncode} on start")
            yield
        finally:
            udevadm("control", "--exit", check=False)
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            for path in made:  # the database and links only the daemon started here made
                shutil.rmtree(path, ignore_errors=True)


def refresh(name: str) -> None:
    udevadm("control", "--reload")
    udevadm("trigger", "--action=change", f"/sys/block/{name}")
    udevadm("settle", "--timeout=30")


def test_udev_finds_a_disk_only_its_database_names(
    udev: None, loop_device: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    device = loop_device(8)
    name = Path(device).name
    serial = f"csiudev{uuid.uuid4().hex[:13]}"
    disk_id = f"d-{serial}"
    RULES.mkdir(parents=True, exist_ok=True)
    rule = RULES / f"99-csi-disk-test-{name}.rules"
    rule.write_text(
        f'KERNEL=="{name}", ENV{{ID_SERIAL}}="{serial}", ENV{{ID_SERIAL_SHORT}}="{serial}"\n'
    )
    try:
        refresh(name)
        assert f"ID_SERIAL={serial}" in udevadm("info", "--query=property", device).stdout
        # Nothing but udev can name it: no by-id link, no serial in sysfs.
        assert not list(Path("/dev/disk/by-id").glob(f"*{serial}*"))
        assert not any(
            (Path("/sys/block") / name / rel).exists() for rel in ("serial", "device/serial")
        )
        with caplog.at_level(logging.DEBUG, logger="csi_disk.host.devices"):
            found = DeviceFinder(Path("/")).find(disk_id)
        assert found == Path(os.path.realpath(device))
        assert f"disk {disk_id} is {found} (found via udev)" in caplog.text
        assert DeviceFinder(Path("/")).find(f"d-csiudev{uuid.uuid4().hex[:13]}") is None
    finally:
        rule.unlink()
        refresh(name)
    assert DeviceFinder(Path("/")).find(disk_id) is None  # the serial went with the rule
