"""The controller served by ``csi-disk serve`` over its socket, against the ECS emulator.

Two emulators for the whole package, both without block devices (the controller never
touches one): ``fast_emulator`` with test-sized latencies for most checks, and
``slow_emulator`` with real ECS latencies (Creating lasts a second) for the tests that
need a disk to stay in transition. Daemons are started per module or per test with
``start_controller``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from csi_disk.csi_pb import csi_pb2
from csi_disk.tokens import VOLUME_NAME_TAG
from csi_disk_emulator.process import EmulatorInfo, running_emulator
from tests.daemon import Daemon, running_daemon

FAST_LATENCY = 0.02  # Creating 20 ms, attach/detach 40 ms
GIB = 1 << 30

StartController = Callable[..., AbstractContextManager[Daemon]]


def ak_env(info: EmulatorInfo) -> dict[str, str]:
    """The account's access key, as the Deployment passes it from a Secret."""
    return {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": info.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": info.access_key_secret,
    }


def no_ak_env() -> dict[str, str]:
    """No access key anywhere: the controller falls back to the instance's RAM role."""
    return {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "",
        "ACCESS_KEY_ID": "",
        "ACCESS_KEY_SECRET": "",
        "ALIBABA_CLOUD_STS_TOKEN_FILE": "",
    }


@contextmanager
def controller(
    info: EmulatorInfo,
    directory: Path,
    *extra: str,
    name: str = "controller",
    attach_mode: str = "node",
    env: dict[str, str] | None = None,
) -> Iterator[Daemon]:
    """``csi-disk serve --mode controller`` on the emulator, ready to answer."""
    directory.mkdir(parents=True, exist_ok=True)
    args = [
        "--mode", "controller",
        "--attach-mode", attach_mode,
        "--ecs-endpoint", info.ecs_endpoint,
        "--metadata-endpoint", info.instances[0].metadata_endpoint,
        "--region", info.region,
        "--operation-timeout", "60",
        "--log-level", "debug",
        *extra,
    ]  # fmt: skip
    with running_daemon(
        directory / f"{name}.sock",
        *args,
        env=ak_env(info) if env is None else env,
        log_path=directory / f"{name}.log",
    ) as daemon:
        daemon.wait_ready()
        yield daemon


@pytest.fixture(scope="session")
def fast_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    with running_emulator(
        tmp_path_factory.mktemp("ctl-fast-ecs"),
        latency_scale=FAST_LATENCY,
        seed=31,
        block_devices="off",
    ) as info:
        yield info


@pytest.fixture(scope="session")
def slow_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    with running_emulator(
        tmp_path_factory.mktemp("ctl-slow-ecs"), latency_scale=1.0, seed=32, block_devices="off"
    ) as info:
        yield info


@pytest.fixture
def fast(fast_emulator: EmulatorInfo) -> Iterator[EmulatorInfo]:
    """The fast emulator, with any faults, throttles or stock limits cleared afterwards."""
    yield fast_emulator
    reset(fast_emulator)


@pytest.fixture
def slow(slow_emulator: EmulatorInfo) -> Iterator[EmulatorInfo]:
    yield slow_emulator
    reset(slow_emulator)


def reset(info: EmulatorInfo) -> None:
    info.admin("DELETE", "/faults")
    for zone in info.zones:
        for category in ("cloud_essd", "cloud_ssd", "cloud_efficiency", "cloud_auto", "cloud"):
            info.admin("POST", "/stock", {"zone": zone, "category": category, "count": None})


@pytest.fixture
def start_controller(tmp_path: Path) -> StartController:
    """``with start_controller(info, *flags, env=...) as daemon:`` a private controller."""

    def start(info: EmulatorInfo, *extra: str, **kwargs: Any) -> AbstractContextManager[Daemon]:
        return controller(info, tmp_path, *extra, **kwargs)

    return start


# --- requests and emulator views ------------------------------------------------------------


def mount_cap(fs_type: str = "ext4") -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type=fs_type),
        access_mode=csi_pb2.VolumeCapability.AccessMode(
            mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
        ),
    )


def create_request(
    name: str,
    gib: int = 20,
    *,
    params: dict[str, str] | None = None,
    preferred: list[dict[str, str]] | None = None,
    requisite: list[dict[str, str]] | None = None,
    limit_gib: int = 0,
) -> csi_pb2.CreateVolumeRequest:
    request = csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=gib * GIB, limit_bytes=limit_gib * GIB),
        volume_capabilities=[mount_cap()],
        parameters=params or {},
    )
    if preferred is not None or requisite is not None:
        request.accessibility_requirements.CopyFrom(
            csi_pb2.TopologyRequirement(
                preferred=[csi_pb2.Topology(segments=s) for s in preferred or []],
                requisite=[csi_pb2.Topology(segments=s) for s in requisite or []],
            )
        )
    return request


def disks_named(info: EmulatorInfo, name: str) -> list[dict[str, Any]]:
    """The emulator's disk rows tagged with volume name ``name`` (deleted disks are gone)."""
    found = []
    for row in info.admin("GET", "/disks")["disks"]:
        tags = {t["TagKey"]: t["TagValue"] for t in json.loads(row["tags"] or "[]")}
        if tags.get(VOLUME_NAME_TAG) == name:
            found.append(row)
    return found


def disk_row(info: EmulatorInfo, disk_id: str) -> dict[str, Any] | None:
    rows = info.admin("GET", "/disks")
    return next((r for r in rows["disks"] if r["id"] == disk_id), None)


def attachments_of(info: EmulatorInfo, disk_id: str) -> dict[str, str]:
    """Instance id -> attachment state (Attaching, Attached, Detaching) for one disk."""
    rows = info.admin("GET", "/disks")["attachments"]
    return {r["instance_id"]: r["state"] for r in rows if r["disk_id"] == disk_id}
