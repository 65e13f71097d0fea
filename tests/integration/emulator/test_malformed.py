"""Requests the emulator cannot parse, or that trip a bug, still get an answer in the
dialect of their path (ECS envelope, admin JSON), never a dropped connection."""

from __future__ import annotations

import http.client
import json
import logging
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from csi_disk_emulator import admin, rpc
from csi_disk_emulator.cloud import Options
from csi_disk_emulator.errors import EcsError
from csi_disk_emulator.process import EmulatorInfo
from csi_disk_emulator.server import MAX_BODY_BYTES, Emulator
from csi_disk_emulator.topology import default_topology

ENVELOPE = {"RequestId", "HostId", "Code", "Message", "Recommend"}
FORM = "application/x-www-form-urlencoded"


def _address(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.split("://", 1)[1].rpartition(":")
    return host, int(port)


def _connect(endpoint: str) -> http.client.HTTPConnection:
    host, port = _address(endpoint)
    return http.client.HTTPConnection(host, port, timeout=10)


def _raw(
    conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str], body: bytes
) -> http.client.HTTPResponse:
    """Send exactly these headers (http.client adds no Content-Length of its own)."""
    conn.putrequest(method, path, skip_accept_encoding=True)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    if body:
        conn.send(body)
    return conn.getresponse()


def _envelope(response: http.client.HTTPResponse) -> dict[str, Any]:
    body = json.loads(response.read())
    assert set(body) == ENVELOPE
    assert body["RequestId"] in body["Recommend"]
    return body


@pytest.mark.parametrize("length", ["abc", "-5", "1e3", "5, 5", ""])
def test_unparsable_content_length_is_invalid_parameter_and_closes(
    emulator: EmulatorInfo, length: str
) -> None:
    conn = _connect(emulator.ecs_endpoint)
    try:
        response = _raw(conn, "POST", "/", {"Content-Length": length, "Content-Type": FORM}, b"")
        body = _envelope(response)
        assert response.status == 400
        assert body["Code"] == "InvalidParameter"
        assert "Content-Length" in body["Message"]
        # The body's end is unknown, so the server must not read on into it.
        assert response.getheader("Connection") == "close"
    finally:
        conn.close()


def test_conflicting_content_lengths_are_refused(emulator: EmulatorInfo) -> None:
    conn = _connect(emulator.ecs_endpoint)
    try:
        conn.putrequest("POST", "/", skip_accept_encoding=True)
        conn.putheader("Content-Length", "3")
        conn.putheader("Content-Length", "4")
        conn.endheaders(b"a=bc")
        response = conn.getresponse()
        assert response.status == 400
        assert _envelope(response)["Code"] == "InvalidParameter"
    finally:
        conn.close()


def test_non_utf8_form_body_is_invalid_parameter_and_keeps_the_connection(
    emulator: EmulatorInfo,
) -> None:
    conn = _connect(emulator.ecs_endpoint)
    try:
        body = b"Action=Describe\xff\xfeZones"
        headers = {"Content-Length": str(len(body)), "Content-Type": FORM}
        response = _raw(conn, "POST", "/", headers, body)
        envelope = _envelope(response)
        assert (response.status, envelope["Code"]) == (400, "InvalidParameter")
        assert response.getheader("Connection") != "close"
        # The body was read to its end: the same connection serves the next request.
        conn.request("GET", "/?Action=DescribeZones")
        follow = conn.getresponse()
        assert (follow.status, _envelope(follow)["Code"]) == (400, "MissingParameter")
    finally:
        conn.close()


def test_oversized_body_is_refused_unread(emulator: EmulatorInfo) -> None:
    conn = _connect(emulator.ecs_endpoint)
    try:
        headers = {"Content-Length": str(MAX_BODY_BYTES + 1), "Content-Type": FORM}
        response = _raw(conn, "POST", "/", headers, b"")  # nothing sent: nothing waited for
        assert (response.status, _envelope(response)["Code"]) == (400, "InvalidParameter")
    finally:
        conn.close()


def test_chunked_body_is_refused(emulator: EmulatorInfo) -> None:
    conn = _connect(emulator.ecs_endpoint)
    try:
        headers = {"Transfer-Encoding": "chunked", "Content-Type": FORM}
        response = _raw(conn, "POST", "/", headers, b"3\r\na=b\r\n0\r\n\r\n")
        body = _envelope(response)
        assert (response.status, body["Code"]) == (400, "InvalidParameter")
        assert "Transfer-Encoding" in body["Message"]
    finally:
        conn.close()


def test_body_shorter_than_its_length_is_answered(emulator: EmulatorInfo) -> None:
    with socket.create_connection(_address(emulator.ecs_endpoint), timeout=10) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: " + FORM.encode() + b"\r\n"
            b"Content-Length: 100\r\n\r\nAction=Describe"
        )
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body)["Code"] == "InvalidParameter"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/throttle", {"access_key_id": "k", "per_second": "fast"}, "per_second"),
        ("/throttle", {"access_key_id": "k", "per_second": [1]}, "per_second"),
        ("/throttle", {"access_key_id": "k", "per_second": -1}, "per_second"),
        ("/stock", {"zone": "z", "category": "cloud_ssd", "count": "1"}, "count"),
        ("/stock", {"zone": "z", "category": "cloud_ssd", "count": 1.5}, "count"),
        ("/stock", {"zone": "z", "category": "cloud_ssd", "count": 10**30}, "count"),
        ("/faults", {"action": "DescribeZones", "code": "Throttling", "rate": "x"}, "rate"),
        ("/faults", {"action": "DescribeZones", "code": "Throttling", "rate": 2}, "rate"),
        ("/faults", {"action": "DescribeZones", "code": "Throttling", "count": True}, "count"),
        ("/faults", {"action": "DescribeZones", "latency_ms": {"ms": 1}}, "latency_ms"),
        ("/snapshots/quota", {"per_disk": "2"}, "per_disk"),
        ("/modify-cooling", {"seconds": True}, "seconds"),
        ("/disks/d-anything/stuck", {"stuck": "false"}, "stuck"),
        ("/credentials/expire", {"instance_id": 7}, "instance_id"),
        ("/sticky", {"actions": [1, 2]}, "actions"),
    ],
)
def test_wrongly_typed_admin_fields_are_400_naming_the_field(
    emulator: EmulatorInfo, path: str, body: dict[str, Any], field: str
) -> None:
    before = emulator.admin("GET", "/faults")
    conn = _connect(emulator.ecs_endpoint)
    try:
        conn.request("POST", f"/admin{path}", body=json.dumps(body).encode())
        response = conn.getresponse()
        reply = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 400
    assert field in reply["error"]
    assert emulator.admin("GET", "/faults") == before


def test_instance_concurrency_must_be_a_positive_integer(emulator: EmulatorInfo) -> None:
    inst = emulator.instances[0]
    conn = _connect(emulator.ecs_endpoint)
    try:
        conn.request("POST", f"/admin/instances/{inst.id}/concurrency", body=b'{"attach": "2"}')
        response = conn.getresponse()
        assert response.status == 400
        assert "attach" in json.loads(response.read())["error"]
    finally:
        conn.close()


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"[" * 100_000 + b"]" * 100_000, b"{\xff}"])
def test_admin_body_that_is_no_json_object_is_400(emulator: EmulatorInfo, body: bytes) -> None:
    conn = _connect(emulator.ecs_endpoint)
    try:
        conn.request("POST", "/admin/faults", body=body)
        response = conn.getresponse()
        assert response.status == 400
        assert json.loads(response.read())["error"]
    finally:
        conn.close()


def test_admin_bad_content_length_answers_admin_json(emulator: EmulatorInfo) -> None:
    conn = _connect(emulator.ecs_endpoint)
    try:
        response = _raw(conn, "POST", "/admin/faults", {"Content-Length": "abc"}, b"")
        reply = json.loads(response.read())
        assert response.status == 400
        assert set(reply) == {"error"}
        assert "Content-Length" in reply["error"]
    finally:
        conn.close()


# --------------------------------------------------------------------------- in process


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[Emulator]:
    """An emulator in this process, so a test can make its internals fail."""
    topology = default_topology("cn-hangzhou", None, 1, random.Random("malformed"))
    emu = Emulator(tmp_path / "ecs", topology, Options(), ("127.0.0.1", 0))
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("a bug in the emulator")


def test_unexpected_error_is_an_internal_error_envelope_and_logged(
    in_process: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(rpc, "handle", _boom)
    conn = _connect(in_process.endpoint)
    with caplog.at_level(logging.ERROR, logger="csi_disk_emulator.server"):
        try:
            conn.request("GET", "/?Action=DescribeZones")
            response = conn.getresponse()
            body = _envelope(response)
        finally:
            conn.close()
    assert response.status == 500
    assert body["Code"] == "InternalError"
    assert body["Message"] == EcsError("InternalError").message
    assert "a bug in the emulator" not in json.dumps(body)
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert any("a bug in the emulator" in str(exc) for exc in logged)


def test_unexpected_admin_error_is_a_500_json(
    in_process: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin, "handle", _boom)
    conn = _connect(in_process.endpoint)
    try:
        conn.request("GET", "/admin/calls")
        response = conn.getresponse()
        reply = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 500
    assert set(reply) == {"error"}


def test_throttle_bucket_hands_out_its_last_token_once(in_process: Emulator) -> None:
    cloud = in_process.cloud
    key = "LTAIthrottled"
    with cloud.store.tx() as db:
        # A capacity of one token that refills once every 1000 s: exactly one call passes.
        db.execute("INSERT OR REPLACE INTO throttles VALUES(?, ?)", (key, 0.001))
    callers = 32
    barrier = threading.Barrier(callers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        barrier.wait()
        try:
            cloud.throttle(key)
            outcome = "passed"
        except EcsError as err:
            outcome = err.code
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("passed") == 1
    assert outcomes.count("Throttling.User") == callers - 1


@pytest.mark.parametrize(
    "key", ["Tag.21.Key", "Tag.0.Key", "Tag.9999999.Key", "Tag." + "9" * 5000 + ".Key"]
)
def test_tag_index_outside_ecs_range_is_invalid_parameter(ecs: Any, key: str) -> None:
    """ECS numbers tags 1..20; a huge index is a bad parameter, not a server error."""
    from aliyunsdkcore.acs_exception.exceptions import ServerException

    request = ecs.request("DescribeDisks")
    request.add_query_param(key, "k")
    with pytest.raises(ServerException) as caught:
        ecs.send(request)
    assert caught.value.get_error_code() == "InvalidParameter"
    assert "index" in caught.value.get_error_msg()
