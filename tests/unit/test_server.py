"""The server's pieces in-process: endpoints, redaction, error mapping and draining."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import grpc
import pytest

from csi_disk import errors
from csi_disk.csi_pb import csi_pb2, csi_pb2_grpc
from csi_disk.server import CALLS, LATENCY, CallInterceptor, Server, parse_endpoint, redacted_copy


@pytest.mark.parametrize(
    ("text", "scheme", "address"),
    [
        ("unix:///csi/csi.sock", "unix", "/csi/csi.sock"),
        ("unix:/csi/csi.sock", "unix", "/csi/csi.sock"),
        ("tcp://127.0.0.1:10000", "tcp", "127.0.0.1:10000"),
        ("tcp://[::1]:10000", "tcp", "[::1]:10000"),
    ],
)
def test_parse_endpoint(text: str, scheme: str, address: str) -> None:
    endpoint = parse_endpoint(text)
    assert (endpoint.scheme, endpoint.address) == (scheme, address)


@pytest.mark.parametrize(
    "text", ["", "/csi/csi.sock", "unix://relative.sock", "tcp://host", "tcp://:99", "http://x:1"]
)
def test_parse_endpoint_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(text)


def test_redaction_covers_every_secrets_field_and_keeps_the_rest() -> None:
    request = csi_pb2.NodeStageVolumeRequest(
        volume_id="d-abc",
        staging_target_path="/var/lib/kubelet/x",
        secrets={"a": "one", "b": "two"},
        volume_context={"k": "visible"},
    )
    copy = redacted_copy(request)
    assert dict(copy.secrets) == {"a": "<redacted>", "b": "<redacted>"}
    assert copy.volume_id == "d-abc"
    assert dict(copy.volume_context) == {"k": "visible"}
    assert dict(request.secrets) == {"a": "one", "b": "two"}  # the original is untouched


def test_every_message_with_secrets_is_redacted() -> None:
    """Walk the whole protocol: any message with a secrets map is covered."""
    checked = 0
    for name, descriptor in csi_pb2.DESCRIPTOR.message_types_by_name.items():
        if "secrets" not in descriptor.fields_by_name:
            continue
        message = getattr(csi_pb2, name)(secrets={"key": "hunter2"})
        assert "hunter2" not in str(redacted_copy(message)), name
        checked += 1
    assert checked >= 10


class SlowIdentity(csi_pb2_grpc.IdentityServicer):
    def __init__(self) -> None:
        self.started = threading.Event()

    def GetPluginInfo(self, request, context):  # type: ignore[override]
        self.started.set()
        time.sleep(1.0)
        return csi_pb2.GetPluginInfoResponse(name="slow", vendor_version="1")

    def Probe(self, request, context):  # type: ignore[override]
        raise errors.FailedPrecondition("not today")

    def GetPluginCapabilities(self, request, context):  # type: ignore[override]
        raise RuntimeError("a bug with a secret AccessKeySecret=abc in it")


@pytest.fixture
def slow_server(tmp_path: Path):
    server = Server(f"unix://{tmp_path}/s.sock", workers=4)
    servicer = SlowIdentity()
    csi_pb2_grpc.add_IdentityServicer_to_server(servicer, server.grpc_server)
    server.start()
    channel = grpc.insecure_channel(f"unix://{tmp_path}/s.sock")
    yield server, servicer, csi_pb2_grpc.IdentityStub(channel)
    channel.close()
    server.stop(0)


def test_domain_errors_map_to_codes_and_bugs_to_internal(slow_server) -> None:
    _, _, stub = slow_server
    with pytest.raises(grpc.RpcError) as err:
        stub.Probe(csi_pb2.ProbeRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details() == "not today"
    with pytest.raises(grpc.RpcError) as err:
        stub.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "abc" not in err.value.details()
    assert "Traceback" not in err.value.details()


def test_a_call_the_plugin_does_not_offer_is_unimplemented(tmp_path: Path) -> None:
    server = Server(f"unix://{tmp_path}/u.sock", workers=2)
    csi_pb2_grpc.add_ControllerServicer_to_server(
        csi_pb2_grpc.ControllerServicer(), server.grpc_server
    )
    server.start()
    channel = grpc.insecure_channel(f"unix://{tmp_path}/u.sock")
    try:
        with pytest.raises(grpc.RpcError) as err:
            csi_pb2_grpc.ControllerStub(channel).GetCapacity(
                csi_pb2.GetCapacityRequest(), timeout=5
            )
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        channel.close()
        server.stop(0)


def test_stop_drains_in_flight_calls_and_refuses_new_ones(slow_server) -> None:
    server, servicer, stub = slow_server
    outcome: dict[str, object] = {}

    def call() -> None:
        outcome["reply"] = stub.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=10)

    caller = threading.Thread(target=call)
    caller.start()
    assert servicer.started.wait(5)
    server.stop(grace=10)  # returns once the in-flight call has finished
    caller.join(10)
    assert outcome["reply"].name == "slow"  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as err:
        stub.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=2)
    assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_a_huge_user_value_is_refused_with_its_own_code_and_logged_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A megabyte parameter key, echoed whole, would make the status message exceed the
    client's metadata limit: the caller would see RESOURCE_EXHAUSTED ("no capacity")."""
    from csi_disk.cloud.waiter import DiskWaiter
    from csi_disk.config import Config
    from csi_disk.controller import ControllerService
    from tests.fakes import InMemoryCloud

    cloud = InMemoryCloud()
    waiter = DiskWaiter(cloud, 0.01)
    server = Server(f"unix://{tmp_path}/c.sock", workers=2)
    controller = ControllerService(Config(), cloud, waiter, default_zone="cn-hangzhou-h")
    csi_pb2_grpc.add_ControllerServicer_to_server(controller, server.grpc_server)
    server.start()
    channel = grpc.insecure_channel(f"unix://{tmp_path}/c.sock")
    key = "k" * 1_000_000
    cap = csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(),
        access_mode=csi_pb2.VolumeCapability.AccessMode(mode=1),
    )
    try:
        with caplog.at_level("INFO", logger="csi_disk.server"), pytest.raises(
            grpc.RpcError
        ) as err:
            csi_pb2_grpc.ControllerStub(channel).CreateVolume(
                csi_pb2.CreateVolumeRequest(
                    name="pvc-huge", parameters={key: "v"}, volume_capabilities=[cap]
                ),
                timeout=10,
            )
    finally:
        channel.close()
        server.stop(0)
        waiter.close()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown parameter 'kkk" in err.value.details()
    assert len(err.value.details()) < 400
    lines = [r.getMessage() for r in caplog.records]
    assert any("pvc-huge" in line for line in lines)  # the request was logged...
    assert all(len(line) < 2000 for line in lines)  # ...with the key cut short
    assert cloud.calls["create_disk"] == 0

# --- the cheap path -------------------------------------------------------------------------


class QuickIdentity(csi_pb2_grpc.IdentityServicer):
    def GetPluginInfo(self, request, context):  # type: ignore[override]
        return csi_pb2.GetPluginInfoResponse(name="quick", vendor_version="1")


@pytest.fixture
def quick_stub(tmp_path: Path):
    server = Server(f"unix://{tmp_path}/q.sock", workers=2)
    csi_pb2_grpc.add_IdentityServicer_to_server(QuickIdentity(), server.grpc_server)
    server.start()
    channel = grpc.insecure_channel(f"unix://{tmp_path}/q.sock")
    yield csi_pb2_grpc.IdentityStub(channel)
    channel.close()
    server.stop(0)


def _sample(metric, name: str, **labels: str) -> float:
    for family in metric.collect():
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_a_cheap_call_is_counted_without_a_latency_sample(quick_stub, caplog) -> None:
    caplog.set_level(logging.INFO, logger="csi_disk.server")
    ok = {"method": "GetPluginInfo", "code": "OK"}
    calls = _sample(CALLS, "csi_disk_grpc_requests_total", **ok)
    timed = _sample(LATENCY, "csi_disk_grpc_request_duration_seconds_count", **ok)
    for _ in range(3):
        assert quick_stub.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=5).name == "quick"
    assert _sample(CALLS, "csi_disk_grpc_requests_total", **ok) == calls + 3
    assert _sample(LATENCY, "csi_disk_grpc_request_duration_seconds_count", **ok) == timed
    assert not [r for r in caplog.records if "GetPluginInfo" in r.getMessage()]


def test_a_cheap_call_is_logged_in_full_at_debug_level(quick_stub, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="csi_disk.server")
    quick_stub.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=5)
    lines = [r for r in caplog.records if "GetPluginInfo" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.DEBUG, logging.DEBUG]
    assert "request" in lines[0].getMessage() and '"quick"' in lines[1].getMessage()
    assert lines[0].request_id == lines[1].request_id  # type: ignore[attr-defined]


def test_a_failed_cheap_call_is_counted_by_its_code(slow_server) -> None:
    _, _, stub = slow_server
    failed = {"method": "Probe", "code": "FAILED_PRECONDITION"}
    before = _sample(CALLS, "csi_disk_grpc_requests_total", **failed)
    with pytest.raises(grpc.RpcError):
        stub.Probe(csi_pb2.ProbeRequest(), timeout=5)
    assert _sample(CALLS, "csi_disk_grpc_requests_total", **failed) == before + 1


def test_each_method_is_wrapped_once() -> None:
    interceptor = CallInterceptor()
    looked_up: list[str] = []
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)

    def continuation(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        looked_up.append(details.method)
        return handler

    class Details(grpc.HandlerCallDetails):
        method = "/csi.v1.Identity/Probe"
        invocation_metadata = ()

    first = interceptor.intercept_service(continuation, Details())
    assert interceptor.intercept_service(continuation, Details()) is first
    assert first is not handler and looked_up == ["/csi.v1.Identity/Probe"]
