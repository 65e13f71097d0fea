"""Every way a call to ECS can fail, as the sidecars see it: the gRPC status code on the wire.

Each ECS code the emulator can answer (and the ones ECS documents besides), each body ECS or
something in front of it may send that is not ECS's JSON, each failure on the way (refused,
dropped, timed out) and each exception the SDK raises itself goes through the real SDK,
EcsCloud, a controller handler and the server's interceptor. The code asserted is stated
apart from the driver (tests/ecs_codes.py for ECS codes, the tables here for the rest);
INTERNAL is allowed only for a request the driver itself should never have formed.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from aliyunsdkcore.acs_exception import error_code as sdk_codes
from aliyunsdkcore.acs_exception.exceptions import ClientException
from aliyunsdkcore.client import AcsClient

from csi_disk.cloud.credentials import Credentials, StaticProvider
from csi_disk.cloud.ecs import EcsCloud
from csi_disk.cloud.quotas import ApiQuotas
from csi_disk.cloud.retry import RetryPolicy
from csi_disk.cloud.waiter import DiskWaiter
from csi_disk.config import Config
from csi_disk.controller import ControllerService
from csi_disk.csi_pb import csi_pb2, csi_pb2_grpc
from csi_disk.server import MAX_STATUS_MESSAGE, Server
from tests.ecs_codes import DRIVER_BUGS, MEANING
from tests.unit.cloud.test_cloud_error_answers import envelope

SECRET = "Sup3rS3cretValue"
DISK = "d-2ze0000000000000000a"
Code = grpc.StatusCode


class Rig:
    """A controller over EcsCloud at ``url``, served by the real Server in-process."""

    def __init__(self, url: str, directory: Path) -> None:
        self.cloud = EcsCloud(
            "cn-hangzhou",
            StaticProvider(Credentials("LTAI5tKeyIdent", SECRET)),
            endpoint=url,
            quotas=ApiQuotas(first_gap=0.001),
            retry_policy=RetryPolicy(max_attempts=1, total_timeout=1.0),
            connect_timeout=1.0,
            read_timeout=0.5,
            sleep=lambda _: None,
        )
        self.waiter = DiskWaiter(self.cloud, 0.01)
        self.server = Server(f"unix://{directory}/ctl.sock", workers=2)
        controller = ControllerService(
            Config(attach_mode="controller", operation_timeout=5.0),
            self.cloud,
            self.waiter,
            default_zone="cn-hangzhou-h",
        )
        csi_pb2_grpc.add_ControllerServicer_to_server(controller, self.server.grpc_server)
        self.server.start()
        self.channel = grpc.insecure_channel(f"unix://{directory}/ctl.sock")
        self.stub = csi_pb2_grpc.ControllerStub(self.channel)

    def status(self) -> tuple[grpc.StatusCode, str]:
        """The status of a ControllerGetVolume whose DescribeDisks fails."""
        with pytest.raises(grpc.RpcError) as caught:
            self.stub.ControllerGetVolume(
                csi_pb2.ControllerGetVolumeRequest(volume_id=DISK), timeout=10
            )
        return caught.value.code(), caught.value.details() or ""

    def close(self) -> None:
        self.channel.close()
        self.server.stop(0)
        self.waiter.close()


@pytest.fixture
def rig(ecs_server: Any, tmp_path: Path) -> Iterator[Callable[[Any], Rig]]:
    rigs: list[Rig] = []

    def start(handler: Any) -> Rig:
        url = handler if isinstance(handler, str) else ecs_server(handler).url
        rigs.append(Rig(url, tmp_path))
        return rigs[-1]

    yield start
    for r in rigs:
        r.close()


def expect_clean(code: grpc.StatusCode, details: str) -> None:
    assert len(details) <= MAX_STATUS_MESSAGE
    assert SECRET not in details and "Signature=" not in details and "http://" not in details
    assert "Traceback" not in details


# --- ECS's codes -----------------------------------------------------------------------------


@pytest.mark.parametrize("ecs_code", sorted(MEANING))
def test_each_ecs_code_reaches_the_caller_as_its_meaning_says(rig: Any, ecs_code: str) -> None:
    expected = getattr(Code, MEANING[ecs_code].code)
    if ecs_code not in DRIVER_BUGS:
        assert expected != Code.INTERNAL, f"{ecs_code} is a refusal, not a bug in the driver"
    code, details = rig(lambda action, params: envelope(ecs_code)).status()
    assert code == expected, details
    assert ecs_code in details
    expect_clean(code, details)


# --- bodies that are not ECS's JSON error --------------------------------------------------------

UNREADABLE: list[tuple[str, int, Any, grpc.StatusCode]] = [
    # Something in front of ECS (a proxy, a wrong --ecs-endpoint) answering its own page.
    ("empty 400", 400, b"", Code.FAILED_PRECONDITION),
    ("html 403", 403, "<html>Forbidden by proxy</html>", Code.FAILED_PRECONDITION),
    ("html 404", 404, "<html>Not Found</html>", Code.FAILED_PRECONDITION),
    ("html 429", 429, "<html>Too Many Requests</html>", Code.UNAVAILABLE),
    ("html 502", 502, "<html>Bad Gateway</html>", Code.UNAVAILABLE),
    ("empty 503", 503, b"", Code.UNAVAILABLE),
    ("a megabyte of 400", 400, b"x" * 1_000_000, Code.FAILED_PRECONDITION),
    ("json list 400", 400, b"[1, 2]", Code.FAILED_PRECONDITION),
    # The SDK itself fails reading these (TypeError, UnicodeDecodeError, IndexError): ECS
    # answered an error the driver cannot read; the caller retries.
    ("json number 400", 400, b"123", Code.UNAVAILABLE),
    ("json null 400", 400, b"null", Code.UNAVAILABLE),
    ("not utf-8 400", 400, b"\xff\xfe\x00bad", Code.UNAVAILABLE),
    (
        "signature mismatch without the string to sign",
        400,
        {"Code": "SignatureDoesNotMatch", "Message": "no colon here", "RequestId": "r"},
        Code.UNAVAILABLE,
    ),
    ("a numeric code", 400, {"Code": 12345, "Message": "odd", "RequestId": "r"},
     Code.INVALID_ARGUMENT),
    # A success status with a body that is no answer.
    ("200 not json", 200, b"<html>captive portal</html>", Code.UNAVAILABLE),
    ("200 json list", 200, b"[]", Code.UNAVAILABLE),
]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [case[1:] for case in UNREADABLE],
    ids=[case[0] for case in UNREADABLE],
)
def test_an_answer_that_is_not_an_ecs_error_never_reaches_the_caller_as_internal(
    rig: Any, status: int, body: Any, expected: grpc.StatusCode
) -> None:
    code, details = rig(lambda action, params: (status, body)).status()
    assert code == expected, details
    expect_clean(code, details)


# --- the way to ECS --------------------------------------------------------------------------


def test_a_refused_connection_is_unavailable(rig: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nobody listens there
    code, details = rig(f"http://127.0.0.1:{port}").status()
    assert code == Code.UNAVAILABLE and "connection refused" in details
    expect_clean(code, details)


def test_a_dropped_connection_is_unavailable(rig: Any) -> None:
    code, details = rig(lambda action, params: (200, None)).status()
    assert code == Code.UNAVAILABLE, details
    expect_clean(code, details)


def test_a_read_timeout_is_unavailable(rig: Any) -> None:
    def slow(action: str, params: dict[str, str]) -> Any:
        time.sleep(1.5)  # past the rig's 0.5 s read timeout
        return 200, {"RequestId": "r", "Disks": {"Disk": []}}

    code, details = rig(slow).status()
    assert code == Code.UNAVAILABLE and "timed out" in details
    expect_clean(code, details)


# --- what the SDK raises itself --------------------------------------------------------------

# Every ClientException code the SDK defines, and what it means to the caller.
SDK_CLIENT_CODES = {
    sdk_codes.SDK_INVALID_REGION_ID: Code.FAILED_PRECONDITION,
    sdk_codes.SDK_ENDPOINT_RESOLVING_ERROR: Code.FAILED_PRECONDITION,
    sdk_codes.SDK_MISSING_ENDPOINTS_FILER: Code.FAILED_PRECONDITION,
    sdk_codes.SDK_ENDPOINT_TESTABILITY: Code.FAILED_PRECONDITION,
    sdk_codes.SDK_SERVER_UNREACHABLE: Code.UNAVAILABLE,
    sdk_codes.SDK_HTTP_ERROR: Code.UNAVAILABLE,
    sdk_codes.SDK_UNKNOWN_SERVER_ERROR: Code.UNAVAILABLE,
    sdk_codes.SDK_INVALID_CREDENTIAL: Code.PERMISSION_DENIED,
    sdk_codes.SDK_GET_SESSION_CREDENTIAL_FAILED: Code.UNAVAILABLE,
    sdk_codes.SDK_INVALID_SESSION_EXPIRATION: Code.UNAVAILABLE,
    # A request the driver built wrong: the one place INTERNAL belongs.
    sdk_codes.SDK_INVALID_REQUEST: Code.INTERNAL,
    sdk_codes.SDK_INVALID_PARAMS: Code.INTERNAL,
    sdk_codes.SDK_INVALID_PARAMETER: Code.INTERNAL,
    sdk_codes.SDK_NOT_SUPPORT: Code.INTERNAL,
}


def test_the_table_covers_every_client_error_the_sdk_defines() -> None:
    defined = {v for k, v in vars(sdk_codes).items() if k.startswith("SDK_")}
    assert defined == set(SDK_CLIENT_CODES)


@pytest.mark.parametrize("sdk_code", sorted(SDK_CLIENT_CODES))
def test_each_sdk_client_error_reaches_the_caller_as_its_meaning_says(
    rig: Any, monkeypatch: pytest.MonkeyPatch, sdk_code: str
) -> None:
    def raising(self: AcsClient, request: Any) -> bytes:
        raise ClientException(sdk_code, f"failed at http://ecs.example/?Signature=x {SECRET}")

    monkeypatch.setattr(AcsClient, "do_action_with_exception", raising)
    code, details = rig(lambda action, params: (200, {})).status()
    assert code == SDK_CLIENT_CODES[sdk_code], details
    expect_clean(code, details)


@pytest.mark.parametrize("kind", [IndexError, KeyError, TypeError, AttributeError, ValueError])
def test_any_other_sdk_exception_is_unavailable_and_says_nothing_it_holds(
    rig: Any, monkeypatch: pytest.MonkeyPatch, kind: type[Exception]
) -> None:
    def raising(self: AcsClient, request: Any) -> bytes:
        raise kind(f"http://ecs.example/?AccessKeyId=LTAI5tKeyIdent&Signature=abc {SECRET}")

    monkeypatch.setattr(AcsClient, "do_action_with_exception", raising)
    code, details = rig(lambda action, params: (200, {})).status()
    assert code == Code.UNAVAILABLE and kind.__name__ in details
    expect_clean(code, details)
