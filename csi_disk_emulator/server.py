"""The HTTP side: one threaded server routing ECS RPC (``/``), the metadata service
(``/metadata/<instance-id>/...``) and the admin API (``/admin/...``)."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from csi_disk_emulator import admin, metadata, rpc
from csi_disk_emulator.actions import load_actions
from csi_disk_emulator.cloud import Cloud, Options
from csi_disk_emulator.errors import EcsError, invalid_parameter
from csi_disk_emulator.state import Store
from csi_disk_emulator.topology import INSTANCE_TYPES, Topology

log = logging.getLogger(__name__)


class Emulator:
    """State dir + cloud + HTTP server; ``start`` returns once requests are served."""

    def __init__(
        self, state_dir: Path, topology: Topology, options: Options, listen: tuple[str, int]
    ) -> None:
        load_actions()
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(state_dir / "state.sqlite")
        self.topology = self._settle_topology(topology, options.seed)
        self.cloud = Cloud(state_dir, self.store, self.topology, options)
        self.httpd = _Server(listen, _Handler)
        self.httpd.emulator = self
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)
        self.info: dict[str, Any] = {}

    def _settle_topology(self, topology: Topology, seed: int) -> Topology:
        """The first start records the topology and keys; later starts reuse them so ids,
        keys and instances survive restarts whatever flags are given."""
        saved = self.store.get_meta("topology")
        if saved is not None:
            return Topology.from_json(saved)
        rng = random.Random(f"{seed}:keys")
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        key_id = "LTAI" + "".join(rng.choice(alphabet) for _ in range(20))
        secret = "".join(rng.choice(alphabet) for _ in range(30))
        with self.store.tx() as db:
            for inst in topology.instances:
                if inst.instance_type not in INSTANCE_TYPES:
                    raise ValueError(f"unknown instance type {inst.instance_type}")
                db.execute(
                    "INSERT INTO instances VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        inst.id,
                        inst.zone,
                        inst.instance_type,
                        inst.status,
                        inst.ram_role,
                        inst.max_attaching,
                        inst.max_detaching,
                        int(inst.metadata_token_required),
                        time.time(),
                    ),
                )
            for key, value in (("topology", topology.to_json()), ("access_keys", {key_id: secret})):
                db.execute("INSERT INTO meta VALUES(?, ?)", (key, json.dumps(value)))
        return topology

    @property
    def endpoint(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def describe(self) -> dict[str, Any]:
        """The emulator.json content: everything a client needs to talk to us."""
        key_id, secret = next(iter(self.cloud.account_keys().items()))
        with self.store.tx() as db:
            rows = db.execute("SELECT * FROM instances ORDER BY rowid").fetchall()
        return {
            "region": self.topology.region,
            "ecs_endpoint": self.endpoint,
            "access_key_id": key_id,
            "access_key_secret": secret,
            "admin_endpoint": f"{self.endpoint}/admin",
            "zones": [z.id for z in self.topology.zones],
            "instances": [
                {
                    "id": r["id"],
                    "zone": r["zone"],
                    "instance_type": r["instance_type"],
                    "bus": INSTANCE_TYPES[r["instance_type"]].bus,
                    "metadata_endpoint": f"{self.endpoint}/metadata/{r['id']}",
                    "device_root": str(self.cloud.devices.device_root(r["id"])),
                    "ram_role": r["ram_role"],
                }
                for r in rows
            ],
        }

    def start(self) -> None:
        self.cloud.start()
        self._thread.start()
        self.info = self.describe()
        target = self.state_dir / "emulator.json"
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.info, indent=2), encoding="utf-8")
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)

    def stop(self) -> None:
        """Clean shutdown: stop serving, release loop devices; state stays for a restart."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.cloud.stop(release_devices=True)
        (self.state_dir / "emulator.json").unlink(missing_ok=True)
        self.store.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # bursts of hundreds of clients, as a busy ECS endpoint takes
    emulator: Emulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-answer is routine; anything else goes to the log, not
        to a bare traceback on stderr."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("client %s went away", client_address)
            return
        log.exception("request from %s failed", client_address)


# ECS bodies are a few KiB at most; a larger claim is refused before anything is read.
MAX_BODY_BYTES = 1 << 20
_DIGITS = re.compile(r"[0-9]+")


class _Malformed(Exception):
    """A request that cannot be parsed far enough to route: answered 400 in the dialect of
    its path. ``close`` when the body's end is unknown, so the connection cannot be reused."""

    def __init__(self, error: EcsError, close: bool = False) -> None:
        super().__init__(error.message)
        self.error = error
        self.close = close


def _dialect(path: str) -> str:
    if path.startswith("/admin/") or path == "/admin":
        return "admin"
    if path.startswith("/metadata/"):
        return "metadata"
    return "ecs"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        # Query strings carry signatures and security tokens: never log them.
        log.debug("%s %s", self.command, self.path.split("?", 1)[0])

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def do_PUT(self) -> None:
        self._route()

    def do_DELETE(self) -> None:
        self._route()

    def _route(self) -> None:
        """Every request gets an answer in its path's dialect, even one that cannot be
        parsed or that trips a bug: a dropped connection tells a client nothing."""
        path = urlsplit(self.path).path
        try:
            self._serve(path)
        except (TimeoutError, ConnectionError):
            raise  # the client stalled or left: there is no one to answer
        except _Malformed as bad:
            self.close_connection = self.close_connection or bad.close
            self._refuse(path, bad.error)
        except Exception:
            log.exception("%s %s failed", self.command, path)
            self.close_connection = True  # the request may not have been read to its end
            self._refuse(path, EcsError("InternalError"))

    def _read_body(self) -> bytes:
        """The body Content-Length announces; a length that is absent, chunked, not a
        number or too large is refused without reading, as its end cannot be trusted."""
        if self.headers.get("Transfer-Encoding"):
            raise _Malformed(
                invalid_parameter("Transfer-Encoding", "Send the body with a Content-Length."),
                close=True,
            )
        values = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if not values:
            return b""
        value = values.pop()
        if values or not _DIGITS.fullmatch(value):
            raise _Malformed(
                invalid_parameter("Content-Length", "It must be one non-negative integer."),
                close=True,
            )
        length = int(value)
        if length > MAX_BODY_BYTES:
            raise _Malformed(
                invalid_parameter("Content-Length", f"At most {MAX_BODY_BYTES} bytes are allowed."),
                close=True,
            )
        raw = self.rfile.read(length) if length else b""
        if len(raw) != length:
            raise _Malformed(
                invalid_parameter("Content-Length", "The body ended before it."), close=True
            )
        return raw

    def _serve(self, path: str) -> None:
        emulator = self.server.emulator
        url = urlsplit(self.path)
        raw = self._read_body()
        if _dialect(path) == "admin":
            try:
                body = admin.parse_body(raw)
            except admin.AdminError as err:
                self._send(err.status, "application/json", json.dumps({"error": str(err)}))
                return
            status, reply = admin.handle(
                emulator.cloud, self.command, path[len("/admin") :], body, emulator.info
            )
            self._send(status, "application/json", json.dumps(reply))
            return
        if _dialect(path) == "metadata":
            _, _, rest = path.partition("/metadata/")
            instance_id, _, sub = rest.partition("/")
            headers = {k.lower(): v for k, v in self.headers.items()}
            emulator.cloud.count_metadata(sub)
            status, ctype, text = metadata.handle(
                emulator.cloud, self.command, instance_id, sub, headers
            )
            self._send(status, ctype, text)
            return
        form: list[tuple[str, str]] = []
        ctype = self.headers.get("Content-Type", "")
        if raw and "application/x-www-form-urlencoded" in ctype:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _Malformed(
                    invalid_parameter("Body", "A form body must be UTF-8 text.")
                ) from None
            form = parse_qsl(text, keep_blank_values=True)
        headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        request = rpc.Request(
            method=self.command,
            path=url.path,
            query=parse_qsl(url.query, keep_blank_values=True),
            form=form,
            headers=headers,
            body=raw,
            host=self._host(),
        )
        status, reply = rpc.handle(emulator.cloud, request)
        self._send(status, "application/json;charset=utf-8", json.dumps(reply))

    def _host(self) -> str:
        return self.headers.get("Host", "ecs.aliyuncs.com")

    def _refuse(self, path: str, error: EcsError) -> None:
        """``error`` as ECS (envelope), the admin API (JSON) or the metadata service (text)
        would answer it."""
        dialect = _dialect(path)
        if dialect == "admin":
            self._send(error.status, "application/json", json.dumps({"error": error.message}))
        elif dialect == "metadata":
            self._send(error.status, "text/plain", error.message)
        else:
            body = rpc.error_body(error, rpc.new_request_id(), self._host())
            self._send(error.status, "application/json;charset=utf-8", json.dumps(body))

    def _send(self, status: int, ctype: str, text: str) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
