"""The controller rides through throttling and credential rotation, and keeps secrets out
of its log."""

from __future__ import annotations

import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import grpc

from csi_disk_emulator.process import EmulatorInfo
from tests.daemon import Daemon
from tests.integration.controller.conftest import (
    StartController,
    create_request,
    disks_named,
    no_ak_env,
)

# A token as a query parameter or a JSON field; the word alone appears in ECS's error
# message for an expired token, which is fine to log.
TOKEN_FIELD = re.compile(r"SecurityToken[\"']?\s*(=|%3D|:)", re.IGNORECASE)


def create_all(daemon: Daemon, prefix: str, count: int) -> list[str]:
    """Create ``count`` volumes at once, repeating each as the provisioner would on UNAVAILABLE."""

    def one(i: int) -> str:
        request = create_request(f"{prefix}-{i}")
        for _ in range(5):
            try:
                return daemon.controller.CreateVolume(request, timeout=60).volume.volume_id
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                failures.append(err.details())
        raise AssertionError(f"{request.name} never succeeded: {failures[-1]}")

    failures: list[str] = []
    with ThreadPoolExecutor(count) as pool:
        ids = list(pool.map(one, range(count)))
    assert len(set(ids)) == count
    return ids


def test_throttled_account_still_creates_everything(
    fast: EmulatorInfo, start_controller: StartController
) -> None:
    with start_controller(fast) as daemon:
        fast.admin("POST", "/throttle", {"access_key_id": fast.access_key_id, "per_second": 4})
        ids = create_all(daemon, "throttled", 12)
        fast.admin("POST", "/throttle", {"access_key_id": fast.access_key_id, "per_second": None})
        log = daemon.log()
    for i, disk_id in enumerate(ids):
        assert [r["id"] for r in disks_named(fast, f"throttled-{i}")] == [disk_id]
    assert "Throttling" in log  # the storm really happened and was ridden through


def test_create_disk_throttling_faults_ride_through(
    fast: EmulatorInfo, start_controller: StartController
) -> None:
    with start_controller(fast) as daemon:
        fast.admin("POST", "/faults", {"action": "CreateDisk", "code": "Throttling", "rate": 0.5})
        ids = create_all(daemon, "faulty", 10)
    for i, disk_id in enumerate(ids):
        assert [r["id"] for r in disks_named(fast, f"faulty-{i}")] == [disk_id]


def issued_credentials(info: EmulatorInfo) -> list[tuple[str, str]]:
    """Every (secret, security token) the emulator's metadata service has handed out."""
    db = sqlite3.connect(f"file:{info.state_dir / 'state.sqlite'}?mode=ro", uri=True)
    try:
        return [tuple(row) for row in db.execute("SELECT secret, token FROM credentials")]
    finally:
        db.close()


def test_ram_role_credentials_rotate_mid_run(
    fast: EmulatorInfo, start_controller: StartController
) -> None:
    instance = fast.instances[0]
    with start_controller(fast, env=no_ak_env(), name="ram-role") as daemon:
        first = daemon.controller.CreateVolume(create_request("role-1"), timeout=30)
        fast.admin("POST", "/credentials/expire", {"instance_id": instance.id})
        second = daemon.controller.CreateVolume(create_request("role-2"), timeout=30)
        fast.admin("POST", "/credentials/expire", {"instance_id": instance.id})
        again = daemon.controller.CreateVolume(create_request("role-1"), timeout=30)
        log = daemon.log()
    assert again.volume.volume_id == first.volume.volume_id
    assert [r["id"] for r in disks_named(fast, "role-2")] == [second.volume.volume_id]
    assert "expired credentials" in log  # ECS refused the old token and the driver renewed it
    issued = issued_credentials(fast)
    assert len(issued) >= 2
    for secret, token in issued:
        assert secret not in log
        assert token not in log
    assert TOKEN_FIELD.search(log) is None


def test_log_holds_no_secret_or_signed_url(
    fast: EmulatorInfo, start_controller: StartController
) -> None:
    with start_controller(fast, name="secrets") as daemon:
        daemon.controller.CreateVolume(create_request("secret-check"), timeout=30)
        fast.admin("POST", "/faults", {"action": "DescribeDisks", "code": "Throttling", "count": 2})
        daemon.controller.CreateVolume(create_request("secret-check"), timeout=30)
        log = daemon.log()
    assert "DescribeDisks" in log or "CreateDisk" in log  # debug logging reached the file
    assert fast.access_key_secret not in log
    assert "Signature=" not in log
    assert TOKEN_FIELD.search(log) is None
