"""Fixtures for the ECS adapter tests: a tiny local HTTP server answering canned ECS JSON,
so the real SDK (signing, endpoint, error parsing) is exercised without a network."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

# A dict is sent as JSON; a str as an HTML page (what a gateway in front of ECS answers);
# bytes exactly as they are; None drops the connection without an answer.
Answer = tuple[int, dict[str, Any] | str | bytes | None]
Handler = Callable[[str, dict[str, str]], Answer]


@dataclass
class FakeEcs:
    handler: Handler
    url: str = ""
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def actions(self) -> list[str]:
        with self.lock:
            return [a for a, _ in self.calls]

    @staticmethod
    def error(status: int, code: str, message: str = "canned failure") -> Answer:
        return status, {"Code": code, "Message": message, "RequestId": "req-1"}


@contextmanager
def _serve(handler: Handler) -> Iterator[FakeEcs]:
    fake = FakeEcs(handler)

    class Handler_(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            query = urllib.parse.urlsplit(self.path).query
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            params = dict(urllib.parse.parse_qsl(query))
            params.update(urllib.parse.parse_qsl(body))
            action = params.get("Action", "")
            with fake.lock:
                fake.calls.append((action, params))
            status, payload = fake.handler(action, params)
            if payload is None:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if isinstance(payload, bytes):
                data, kind = payload, "application/json"
            elif isinstance(payload, str):
                data, kind = payload.encode(), "text/html"
            else:
                data, kind = json.dumps(payload).encode(), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _answer
        do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # a hundred callers connect at once in the storm tests
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler_)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def ecs_server() -> Iterator[Callable[[Handler], FakeEcs]]:
    """Factory: ``ecs_server(handler)`` starts a fake ECS endpoint for this test."""
    with ExitStack() as stack:
        yield lambda handler: stack.enter_context(_serve(handler))
