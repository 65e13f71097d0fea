"""The ECS instance metadata service, one per instance under ``/metadata/<instance-id>/``.

Serves the paths the driver reads (identity, zone, region, instance type, RAM role
credentials) and the token flow (``PUT latest/api/token``) in normal and hardened mode.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time

from csi_disk_emulator.cloud import Cloud
from csi_disk_emulator.errors import EcsError

TOKEN_TTL_HEADER = "x-aliyun-ecs-metadata-token-ttl-seconds"  # noqa: S105 - a header name
TOKEN_HEADER = "x-aliyun-ecs-metadata-token"  # noqa: S105 - a header name
MAX_TOKEN_TTL_S = 21600

Reply = tuple[int, str, str]  # status, content type, body


def handle(
    cloud: Cloud, method: str, instance_id: str, path: str, headers: dict[str, str]
) -> Reply:
    """Answer one metadata request; ``headers`` keys are lower case."""
    with cloud.store.tx() as db:
        inst = db.execute("SELECT * FROM instances WHERE id=?", (instance_id,)).fetchone()
    if inst is None:
        return 404, "text/plain", "Not Found"
    path = path.strip("/")
    if path == "latest/api/token":
        if method != "PUT":
            return 405, "text/plain", "Method Not Allowed"
        return _issue_token(cloud, instance_id, headers.get(TOKEN_TTL_HEADER, ""))
    if method != "GET":
        return 405, "text/plain", "Method Not Allowed"
    token = headers.get(TOKEN_HEADER)
    if token is not None:
        if not _token_valid(cloud, instance_id, token):
            return 401, "text/plain", "Unauthorized"
    elif inst["token_required"]:
        return 403, "text/plain", "Forbidden"
    return _serve(cloud, inst, path)


def _issue_token(cloud: Cloud, instance_id: str, ttl_header: str) -> Reply:
    try:
        ttl = int(ttl_header)
    except ValueError:
        return 400, "text/plain", "Bad Request"
    if not 1 <= ttl <= MAX_TOKEN_TTL_S:
        return 400, "text/plain", "Bad Request"
    token = secrets.token_urlsafe(32)
    with cloud.store.tx() as db:
        db.execute(
            "INSERT INTO metadata_tokens VALUES(?, ?, ?)", (token, instance_id, time.time() + ttl)
        )
    return 200, "text/plain", token


def _token_valid(cloud: Cloud, instance_id: str, token: str) -> bool:
    with cloud.store.tx() as db:
        row = db.execute(
            "SELECT * FROM metadata_tokens WHERE token=? AND instance_id=?", (token, instance_id)
        ).fetchone()
    return row is not None and row["expires"] > time.time()


def _serve(cloud: Cloud, row: sqlite3.Row, path: str) -> Reply:
    region = cloud.topology.region
    plain = {
        "latest/meta-data/instance-id": row["id"],
        "latest/meta-data/zone-id": row["zone"],
        "latest/meta-data/region-id": region,
        "latest/meta-data/instance/instance-type": row["instance_type"],
        "latest/meta-data/hostname": row["id"],
        "latest/meta-data/serial-number": row["id"][2:],
        "latest/meta-data/ram/security-credentials": row["ram_role"],
        "latest/meta-data": "instance-id\nzone-id\nregion-id\ninstance/\nhostname\n"
        "serial-number\nram/",
    }
    if path in plain:
        return 200, "text/plain", str(plain[path])
    role_prefix = "latest/meta-data/ram/security-credentials/"
    if path.startswith(role_prefix):
        role = path[len(role_prefix) :]
        if role != row["ram_role"]:
            return 404, "text/plain", "Not Found"
        try:
            creds = cloud.role_credentials(row["id"])
        except EcsError:
            return 404, "text/plain", "Not Found"
        return 200, "text/plain", json.dumps(creds, indent=2)
    if path == "latest/dynamic/instance-identity/document":
        document = {
            "zone-id": row["zone"],
            "serial-number": row["id"][2:],
            "instance-id": row["id"],
            "region-id": region,
            "private-ipv4": "192.168.0.10",
            "owner-account-id": "1234567890123456",
            "mac": "00:16:3e:00:00:01",
            "image-id": "aliyun_3_x64_20G_alibase_20240101.vhd",
            "instance-type": row["instance_type"],
        }
        return 200, "application/json", json.dumps(document)
    return 404, "text/plain", "Not Found"
