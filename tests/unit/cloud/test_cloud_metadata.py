"""The metadata client against a local stand-in for 100.100.100.200."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from csi_disk.cloud.metadata import PLAIN_RETRY_SECONDS, MetadataClient
from csi_disk.errors import Unavailable

ROLE_DOC = {
    "AccessKeyId": "STS.key",
    "AccessKeySecret": "role-secret-value",
    "SecurityToken": "role-token-value",
    "Expiration": "2030-01-01T00:00:00Z",
    "Code": "Success",
}
VALUES = {
    "/i-abc/latest/meta-data/instance-id": "i-abc",
    "/i-abc/latest/meta-data/zone-id": "cn-hangzhou-k",
    "/i-abc/latest/meta-data/region-id": "cn-hangzhou",
    "/i-abc/latest/meta-data/instance/instance-type": "ecs.g7.large",
    "/i-abc/latest/meta-data/ram/security-credentials/": "csi-role\n",
    "/i-abc/latest/meta-data/ram/security-credentials/csi-role": json.dumps(ROLE_DOC),
}


class Service:
    """token_mode: "required" (GET without token is 401), "refused" (PUT answers 403)."""

    def __init__(self, token_mode: str) -> None:
        self.token_mode = token_mode
        self.puts = 0
        self.gets: list[tuple[str, str]] = []
        self.ttl_headers: list[str] = []


@pytest.fixture
def service(request: pytest.FixtureRequest) -> Iterator[tuple[Service, str]]:
    svc = Service(getattr(request, "param", "required"))

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: str = "") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:
            svc.puts += 1
            svc.ttl_headers.append(self.headers.get("X-aliyun-ecs-metadata-token-ttl-seconds", ""))
            if svc.token_mode == "refused":
                self._send(403)
            else:
                self._send(200, "tok-123")

        def do_GET(self) -> None:
            token = self.headers.get("X-aliyun-ecs-metadata-token", "")
            svc.gets.append((self.path, token))
            if svc.token_mode == "required" and token != "tok-123":
                self._send(401)
            elif self.path in VALUES:
                self._send(200, VALUES[self.path])
            else:
                self._send(404)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield svc, f"http://127.0.0.1:{server.server_address[1]}/i-abc"
    server.shutdown()
    server.server_close()
    thread.join()


def test_reads_identity_with_a_cached_session_token(service: tuple[Service, str]) -> None:
    svc, base = service
    md = MetadataClient(base)
    assert md.instance_id() == "i-abc"
    assert md.zone_id() == "cn-hangzhou-k"
    assert md.region_id() == "cn-hangzhou"
    assert md.instance_type() == "ecs.g7.large"
    assert svc.puts == 1
    assert svc.ttl_headers == ["21600"]
    assert all(token == "tok-123" for _, token in svc.gets)


def test_role_and_credentials(service: tuple[Service, str]) -> None:
    _, base = service
    md = MetadataClient(base + "/")
    role = md.ram_role()
    assert role == "csi-role"
    creds = md.role_credentials(role)
    assert creds["AccessKeyId"] == "STS.key"
    assert creds["SecurityToken"] == "role-token-value"


@pytest.mark.parametrize("service", ["refused"], indirect=True)
def test_falls_back_to_plain_gets_when_tokens_are_refused(service: tuple[Service, str]) -> None:
    svc, base = service
    md = MetadataClient(base)
    assert md.instance_id() == "i-abc"
    assert md.zone_id() == "cn-hangzhou-k"
    assert svc.puts == 1  # the refusal is remembered
    assert all(token == "" for _, token in svc.gets)


@pytest.mark.parametrize("service", ["refused"], indirect=True)
def test_a_refused_token_call_is_tried_again_after_a_while(service: tuple[Service, str]) -> None:
    svc, base = service
    now = {"t": 1000.0}
    md = MetadataClient(base, clock=lambda: now["t"])
    assert md.instance_id() == "i-abc"
    now["t"] += PLAIN_RETRY_SECONDS - 1
    assert md.zone_id() == "cn-hangzhou-k"
    assert svc.puts == 1
    now["t"] += 2
    svc.token_mode = "required"  # the instance was switched to hardened mode meanwhile
    assert md.region_id() == "cn-hangzhou"
    assert svc.puts == 2
    assert svc.gets[-1] == ("/i-abc/latest/meta-data/region-id", "tok-123")


@pytest.mark.parametrize("service", ["refused"], indirect=True)
def test_a_401_on_a_plain_get_asks_for_a_token_at_once(service: tuple[Service, str]) -> None:
    svc, base = service
    md = MetadataClient(base, clock=lambda: 0.0)
    assert md.instance_id() == "i-abc"
    svc.token_mode = "required"
    assert md.zone_id() == "cn-hangzhou-k"
    assert svc.puts == 2
    assert [token for _, token in svc.gets[-2:]] == ["", "tok-123"]


def test_missing_path_is_unavailable_without_the_url(service: tuple[Service, str]) -> None:
    _, base = service
    md = MetadataClient(base)
    with pytest.raises(Unavailable) as info:
        md.role_credentials("other-role")
    assert "127.0.0.1" not in info.value.message
    assert "other-role" not in info.value.message


def test_unreachable_service_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    md = MetadataClient(f"http://127.0.0.1:{port}", timeout=0.5)
    with pytest.raises(Unavailable) as info:
        md.instance_id()
    assert "http://" not in info.value.message


def test_role_names_that_would_escape_the_path_are_refused() -> None:
    md = MetadataClient("http://127.0.0.1:9")
    for bad in ("", "..", "a/b"):
        with pytest.raises(Unavailable):
            md.role_credentials(bad)
