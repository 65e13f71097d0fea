"""The daemon as operators run it: a real process on a real unix socket."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest

from csi_disk import DRIVER_NAME, __version__
from csi_disk.cli import SERVE_FLAGS
from csi_disk.csi_pb import csi_pb2
from csi_disk_emulator.process import running_emulator
from tests.daemon import free_port, running_daemon
from tests.integration.emulator.sdk import Ecs
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90)

UNREACHABLE = "http://127.0.0.1:9"  # discard port: nothing answers, so initialisation waits

Service = csi_pb2.PluginCapability.Service


def capability_types(daemon) -> set[int]:
    reply = daemon.identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest())
    return {c.service.type for c in reply.capabilities if c.HasField("service")}


def test_plugin_info_names_driver_and_version(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "csi.sock", "--metadata-endpoint", UNREACHABLE) as d:
        info = d.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=5)
    assert info.name == DRIVER_NAME
    assert info.vendor_version == __version__
    assert info.vendor_version


def test_driver_name_flag_and_environment(tmp_path: Path) -> None:
    env = {"CSI_DISK_DRIVER_NAME": "from-env.example.com"}
    with running_daemon(tmp_path / "a.sock", "--metadata-endpoint", UNREACHABLE, env=env) as d:
        info = d.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest())
        assert info.name == "from-env.example.com"
    with running_daemon(
        tmp_path / "b.sock",
        "--metadata-endpoint",
        UNREACHABLE,
        "--driver-name",
        "from-flag.example.com",
        env=env,
    ) as d:
        info = d.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest())
        assert info.name == "from-flag.example.com"


@pytest.mark.parametrize(
    ("mode", "controller_served"), [("all", True), ("controller", True), ("node", False)]
)
def test_services_follow_mode(tmp_path: Path, mode: str, controller_served: bool) -> None:
    """Each process registers the services its mode serves, and every one advertises the
    plugin as deployed: the CSI spec asks the same capabilities of all instances, whatever
    RPCs each serves, so a node plugin says a controller exists too."""
    with running_daemon(
        tmp_path / "csi.sock", "--mode", mode, "--metadata-endpoint", UNREACHABLE
    ) as d:
        types = capability_types(d)
        controller = d.controller.ControllerGetCapabilities
        node = d.node.NodeGetCapabilities
        served = {}
        for name, call, request in (
            ("controller", controller, csi_pb2.ControllerGetCapabilitiesRequest()),
            ("node", node, csi_pb2.NodeGetCapabilitiesRequest()),
        ):
            try:
                call(request, timeout=5)
                served[name] = grpc.StatusCode.OK
            except grpc.RpcError as err:
                served[name] = err.code()
    assert {Service.CONTROLLER_SERVICE, Service.VOLUME_ACCESSIBILITY_CONSTRAINTS} <= types
    # A service this mode does not serve is not registered at all; a served one answers
    # UNAVAILABLE until it has initialised.
    assert served["controller"] == (
        grpc.StatusCode.UNAVAILABLE if controller_served else grpc.StatusCode.UNIMPLEMENTED
    )
    assert served["node"] == (
        grpc.StatusCode.UNAVAILABLE if mode in ("all", "node") else grpc.StatusCode.UNIMPLEMENTED
    )


def test_probe_not_ready_while_dependencies_unreachable(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "csi.sock", "--metadata-endpoint", UNREACHABLE) as d:
        assert d.probe() is False
        assert d.probe() is False


def test_socket_mode_stale_socket_and_live_socket(tmp_path: Path) -> None:
    sock = tmp_path / "csi.sock"
    # A stale socket file: bound once, its owner gone.
    import socket as pysocket

    stale = pysocket.socket(pysocket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()
    assert sock.exists()
    with running_daemon(sock, "--metadata-endpoint", UNREACHABLE) as d:
        assert d.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest()).name == DRIVER_NAME
        mode = stat.S_IMODE(os.stat(sock).st_mode)
        assert mode == 0o660
        # A second daemon must not steal a socket a live process is serving.
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "csi_disk",
                "serve",
                "--endpoint",
                f"unix://{sock}",
                "--metadata-endpoint",
                UNREACHABLE,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1
        assert "another process is serving" in second.stderr
        assert d.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest()).name == DRIVER_NAME


def test_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "csi.sock"
    path.write_text("not a socket")
    result = subprocess.run(
        [sys.executable, "-m", "csi_disk", "serve", "--endpoint", f"unix://{path}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert path.read_text() == "not a socket"


def test_sigterm_exits_zero_and_removes_socket(tmp_path: Path) -> None:
    sock = tmp_path / "csi.sock"
    with running_daemon(sock, "--metadata-endpoint", UNREACHABLE) as d:
        d.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest())
        assert d.terminate() == 0
    assert not sock.exists()


def test_tcp_endpoint(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "csi_disk",
            "serve",
            "--endpoint",
            f"tcp://127.0.0.1:{port}",
            "--metadata-endpoint",
            UNREACHABLE,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=20)
        from csi_disk.csi_pb import csi_pb2_grpc

        info = csi_pb2_grpc.IdentityStub(channel).GetPluginInfo(csi_pb2.GetPluginInfoRequest())
        assert info.name == DRIVER_NAME
        channel.close()
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


def test_secrets_never_reach_the_log(tmp_path: Path) -> None:
    secret = "s3cr3t-value-never-logged"
    with running_daemon(
        tmp_path / "csi.sock", "--metadata-endpoint", UNREACHABLE, "--log-level", "debug"
    ) as d:
        request = csi_pb2.CreateVolumeRequest(name="pvc-1", secrets={"password": secret})
        with pytest.raises(grpc.RpcError) as err:
            d.controller.CreateVolume(request, timeout=5)
        assert secret not in (err.value.details() or "")
        request = csi_pb2.NodeStageVolumeRequest(volume_id="d-x", secrets={"token": secret})
        with pytest.raises(grpc.RpcError):
            d.node.NodeStageVolume(request, timeout=5)
        d.terminate()
        log = d.log()
    assert "CreateVolume request" in log
    assert "<redacted>" in log
    assert secret not in log


def test_metrics_endpoint(tmp_path: Path) -> None:
    port = free_port()
    with running_daemon(
        tmp_path / "csi.sock",
        "--metadata-endpoint",
        UNREACHABLE,
        "--metrics-address",
        f"127.0.0.1:{port}",
    ) as d:
        for _ in range(3):
            d.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest())
        with pytest.raises(grpc.RpcError):
            d.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=5)
        with pytest.raises(grpc.RpcError):  # not a cheap call: timed, and counted in flight
            d.node.NodeUnstageVolume(csi_pb2.NodeUnstageVolumeRequest(), timeout=5)
        url = f"http://127.0.0.1:{port}/metrics"
        body = urllib.request.urlopen(url, timeout=10).read().decode()
    assert 'csi_disk_grpc_requests_total{code="OK",method="GetPluginInfo"} 3.0' in body
    assert 'csi_disk_grpc_requests_total{code="UNAVAILABLE",method="NodeGetInfo"} 1.0' in body
    assert 'duration_seconds_count{code="UNAVAILABLE",method="NodeUnstageVolume"} 1.0' in body
    assert "csi_disk_grpc_request_duration_seconds_bucket" in body
    assert "csi_disk_grpc_requests_in_flight" in body
    assert "process_resident_memory_bytes" in body


def test_help_lists_every_flag_with_env_and_default() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "csi_disk", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for flag in SERVE_FLAGS:
        assert f"--{flag.name}" in text
        assert flag.env in text
    assert "default: unix:///csi/csi.sock" in text
    assert "default: diskplugin.csi.alibabacloud.com" in text


def test_probe_follows_initialisation_not_later_outages(tmp_path: Path) -> None:
    """Not ready while ECS is unreachable; ready once it answers; still ready after it goes.

    The livenessprobe sidecar restarts a plugin that reports not ready, so a cloud outage
    after start must not flip Probe.
    """
    from csi_disk_emulator.process import start_emulator, stop_emulator, wait_ready

    port = free_port()
    state = tmp_path / "ecs"
    options = {"listen": f"127.0.0.1:{port}", "block_devices": "off", "latency_scale": 0.01}
    # Start once to learn the instance ids (they live in the state dir), then stop.
    process = start_emulator(state, **options)
    info = wait_ready(state, process)
    stop_emulator(process)
    instance = info.instances[0]
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": info.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": info.access_key_secret,
    }
    args = [
        "--mode", "all",
        "--ecs-endpoint", info.ecs_endpoint,
        "--metadata-endpoint", instance.metadata_endpoint,
        "--device-root", instance.device_root,
    ]  # fmt: skip
    with running_daemon(tmp_path / "csi.sock", *args, env=env) as d:
        assert d.probe() is False
        process = start_emulator(state, **options)
        try:
            wait_ready(state, process)
            d.wait_ready(timeout=60)
            info_reply = d.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=10)
            assert info_reply.node_id == instance.id
        finally:
            stop_emulator(process)
        assert d.probe() is True
        assert d.probe() is True


def test_metrics_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket as pysocket

    with pysocket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "csi_disk", "serve", "--endpoint",
             f"unix://{tmp_path}/csi.sock", "--metrics-address", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=30,
        )  # fmt: skip
    assert result.returncode == 1
    assert "cannot serve metrics" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_node_in_controller_attach_mode_reports_its_instance_types_disk_slots(
    tmp_path: Path,
) -> None:
    """Without --max-volumes-per-node a node that never attaches still asks ECS (through its
    instance's read-only RAM role) what its instance type takes: an 8-disk type reporting
    a fixed 15 would be overcommitted by the scheduler."""
    topology = tmp_path / "topology.json"
    topology.write_text(
        json.dumps(
            {
                "region": "cn-hangzhou",
                "zones": ["cn-hangzhou-h"],
                "instances": [{"zone": "cn-hangzhou-h", "instance_type": "ecs.t6-c1m2.large"}],
            }
        )
    )
    with running_emulator(
        tmp_path / "ecs", topology=topology, latency_scale=0.01, block_devices="off"
    ) as info:
        instance = info.instances[0]
        # A data disk attached outside the driver (no volume-name tag) takes one slot.
        ecs = Ecs.for_account(info)
        disk_id = ecs.create_available(Size=20, DiskCategory="cloud_essd")
        ecs.call("AttachDisk", DiskId=disk_id, InstanceId=instance.id)
        wait_until(lambda: ecs.disk(disk_id)["Status"] == "In_use", "the attach", timeout=20)
        args = [
            "--mode", "node",
            "--attach-mode", "controller",
            "--ecs-endpoint", info.ecs_endpoint,
            "--metadata-endpoint", instance.metadata_endpoint,
            "--kubelet-dir", str(tmp_path / "kubelet"),
            "--device-root", instance.device_root,
        ]  # fmt: skip
        with running_daemon(tmp_path / "node.sock", *args, env={}) as daemon:
            daemon.wait_ready()
            reply = daemon.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=10)
    assert reply.node_id == instance.id
    assert reply.max_volumes_per_node == 8 - 1
