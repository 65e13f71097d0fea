"""ClientToken idempotency, shared by the actions that create resources.

ECS remembers the answer to a create call by its ClientToken: the same token with the same
parameters answers the same again without creating anything, the same token with other
parameters is ``IdempotentParameterMismatch``. ECS documents no expiry and no exception for
a resource deleted since, so the answer stays: a repeat after DeleteDisk gets the deleted
disk's id and creates nothing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from csi_disk_emulator.actions import COMMON_PARAMS, Params
from csi_disk_emulator.errors import EcsError, invalid_parameter

if TYPE_CHECKING:
    from csi_disk_emulator.cloud import Cloud


def fingerprint(params: Params) -> str:
    """What makes two calls with one token the same call: every parameter but the common
    ones and the token itself."""
    relevant = {
        k: v for k, v in params.raw.items() if k not in COMMON_PARAMS and k != "ClientToken"
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def create_once(
    cloud: Cloud,
    p: Params,
    action_name: str,
    create: Callable[[sqlite3.Connection], dict[str, Any]],
) -> dict[str, Any]:
    """Run ``create`` in one transaction unless the ClientToken already has an answer."""
    token = p.str("ClientToken")
    if len(token) > 64:
        raise invalid_parameter("ClientToken", "It must be at most 64 characters.")
    digest = fingerprint(p)
    with cloud.store.tx() as db:
        if token:
            row = db.execute(
                "SELECT * FROM client_tokens WHERE action=? AND token=?", (action_name, token)
            ).fetchone()
            if row is not None:
                if row["fingerprint"] != digest:
                    raise EcsError("IdempotentParameterMismatch")
                return dict(json.loads(row["result"]))
        result = create(db)
        if token:
            db.execute(
                "INSERT INTO client_tokens VALUES(?, ?, ?, ?)",
                (action_name, token, digest, json.dumps(result)),
            )
    cloud.wake()
    return result
