"""The admin JSON API under ``/admin/``: what tests and the demo use to look inside the
emulator and to make it misbehave on purpose."""

from __future__ import annotations

import json
import math
from typing import Any

from csi_disk.cloud.quotas import parse_quotas
from csi_disk_emulator import stock
from csi_disk_emulator.actions.events import record_event
from csi_disk_emulator.cloud import Cloud
from csi_disk_emulator.errors import CATALOGUE, EcsError
from csi_disk_emulator.topology import ALL_CATEGORIES, is_regional

Reply = tuple[int, Any]


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def handle(cloud: Cloud, method: str, path: str, body: Any, info: dict[str, Any]) -> Reply:
    """Answer ``method path`` (path relative to /admin/) with (status, JSON)."""
    parts = [p for p in path.split("/") if p]
    try:
        if not isinstance(body, dict):
            raise AdminError(400, "the body must be a JSON object")
        return _route(cloud, method, parts, body, info)
    except AdminError as err:
        return err.status, {"error": str(err)}
    except EcsError as err:
        return err.status, {"error": err.message, "code": err.code}


def _route(
    cloud: Cloud, method: str, parts: list[str], body: dict[str, Any], info: dict[str, Any]
) -> Reply:
    match (method, parts):
        case ("GET", ["info"]):
            return 200, info
        case ("GET", ["calls"]):
            with cloud.store.tx() as db:
                rows = db.execute("SELECT * FROM calls ORDER BY action").fetchall()
            return 200, {
                "calls": {r["action"]: r["count"] for r in rows},
                "throttled": cloud.quotas.throttled_calls(),
                "metadata": cloud.metadata_counts(),
            }
        case ("POST", ["calls", "reset"]) | ("DELETE", ["calls"]):
            cloud.forget_counts()
            return 200, {}
        case ("GET", ["quotas"]):
            return 200, {"quotas": cloud.quotas.quotas(), "used": cloud.quotas.used()}
        case ("POST", ["quotas"]):
            return _set_quotas(cloud, body)
        case ("POST", ["quotas", "reset"]):
            cloud.quotas.new_minute()
            return 200, {}
        case ("GET", ["faults"]):
            with cloud.store.tx() as db:
                rows = db.execute("SELECT * FROM faults").fetchall()
            return 200, {"faults": [dict(r) for r in rows]}
        case ("POST", ["faults"]):
            return _set_fault(cloud, body)
        case ("DELETE", ["faults"]):
            with cloud.store.tx() as db:
                db.execute("DELETE FROM faults")
                db.execute("DELETE FROM throttles")
            return 200, {}
        case ("POST", ["throttle"]):
            key = _field(body, "access_key_id", str)
            rate = _number(body, "per_second", None)
            with cloud.store.tx() as db:
                if rate is None:
                    db.execute("DELETE FROM throttles WHERE access_key_id=?", (key,))
                else:
                    db.execute("INSERT OR REPLACE INTO throttles VALUES(?, ?)", (key, rate))
            return 200, {}
        case ("POST", ["stock"]):
            return _set_stock(cloud, body)
        case ("GET", ["stock"]):
            with cloud.store.tx() as db:
                levels = stock.read_all(db)
            return 200, {
                "stock": [
                    {"zone": place, "category": category, "remaining": level.remaining,
                     "closed": level.closed, "status_category": level.status_category}
                    for (place, category), level in sorted(levels.items())
                ]
            }  # fmt: skip
        case ("POST", ["disks", disk_id, "stuck"]):
            stuck = _flag(body, "stuck", True)
            with cloud.store.tx() as db:
                cloud.get_disk(db, disk_id)
                db.execute("UPDATE disks SET stuck=? WHERE id=?", (int(stuck), disk_id))
            cloud.wake()
            return 200, {}
        case ("POST", ["sticky"]):
            # {"actions": ["CreateDisk", "AttachDisk", "DetachDisk"]}: transitions those
            # actions start hang (the disk is marked stuck) until unstuck per disk.
            actions = body.get("actions", [])
            if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
                raise AdminError(400, "field 'actions' must be a list of action names")
            with cloud.store.tx() as db:
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES('sticky_actions', ?)",
                    (json.dumps(actions),),
                )
            return 200, {}
        case ("GET", ["disks"]):
            with cloud.store.tx() as db:
                disks = [dict(r) for r in db.execute("SELECT * FROM disks ORDER BY seq")]
                atts = [dict(r) for r in db.execute("SELECT * FROM attachments")]
            return 200, {"disks": disks, "attachments": atts}
        case ("POST", ["instances", instance_id, "stop"]):
            cloud.set_instance_status(instance_id, "Stopped")
            return 200, {}
        case ("POST", ["instances", instance_id, "start"]):
            cloud.set_instance_status(instance_id, "Running")
            return 200, {}
        case ("POST", ["instances", instance_id, "status"]):
            status = _field(body, "status", str)
            if status not in ("Pending", "Running", "Starting", "Stopping", "Stopped"):
                raise AdminError(400, f"unknown instance status {status!r}")
            cloud.set_instance_status(instance_id, status)
            return 200, {}
        case ("POST", ["instances", instance_id, "events"]):
            return _record_event(cloud, instance_id, body)
        case ("POST", ["instances", instance_id, "release"]):
            cloud.release_instance(instance_id)
            return 200, {}
        case ("POST", ["instances", instance_id, "concurrency"]):
            attach = _integer(body, "attach", 1, low=1)
            detach = _integer(body, "detach", 1, low=1)
            with cloud.store.tx() as db:
                cloud.get_instance(db, instance_id)
                db.execute(
                    "UPDATE instances SET max_attaching=?, max_detaching=? WHERE id=?",
                    (attach, detach, instance_id),
                )
            return 200, {}
        case ("POST", ["snapshots", "quota"]):
            # {"per_disk": 2}: CreateSnapshot answers QuotaExceed.Snapshot beyond it.
            per_disk = _integer(body, "per_disk", None)
            if per_disk is None:
                raise AdminError(400, "field 'per_disk' must be an integer")
            cloud.store.set_meta("snapshot_quota_per_disk", per_disk)
            return 200, {}
        case ("POST", ["snapshots", snapshot_id, "stuck"]):
            stuck = _flag(body, "stuck", True)
            with cloud.store.tx() as db:
                cur = db.execute(
                    "UPDATE snapshots SET stuck=? WHERE id=?", (int(stuck), snapshot_id)
                )
                if cur.rowcount == 0:
                    raise EcsError("InvalidSnapshotId.NotFound")
            cloud.wake()
            return 200, {}
        case ("GET", ["snapshots"]):
            with cloud.store.tx() as db:
                rows = [dict(r) for r in db.execute("SELECT * FROM snapshots ORDER BY seq")]
            return 200, {"snapshots": rows}
        case ("POST", ["modify-cooling"]):
            # {"seconds": 5}: the cooling period after a ModifyDiskSpec lands.
            seconds = _number(body, "seconds", None)
            if seconds is None:
                raise AdminError(400, "field 'seconds' must be a number")
            cloud.store.set_meta("modify_cooling_s", seconds)
            return 200, {}
        case ("POST", ["credentials", "expire"]):
            instance = body.get("instance_id")
            if instance is not None and not isinstance(instance, str):
                raise AdminError(400, "field 'instance_id' must be a string")
            count = cloud.expire_credentials(instance)
            return 200, {"expired": count}
    raise AdminError(404, f"no admin route {method} /admin/{'/'.join(parts)}")


def _field(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if not isinstance(value, kind):
        raise AdminError(400, f"field {name!r} must be a {kind.__name__}")
    return value


# SQLite stores integers in 64 bits; the admin API has no use for more than 32.
_MAX_INT = 2**31 - 1


def _number(
    body: dict[str, Any], name: str, default: float | None, high: float = math.inf
) -> float | None:
    """A finite number >= 0 (``default`` when absent or null): JSON booleans, strings,
    NaN and infinities are refused here rather than failing deep inside a handler."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AdminError(400, f"field {name!r} must be a number")
    if not (math.isfinite(value) and 0 <= value <= high):
        raise AdminError(400, f"field {name!r} must be between 0 and {high}")
    return float(value)


def _integer(body: dict[str, Any], name: str, default: int | None, low: int = 0) -> int | None:
    """An integer in ``low``.._MAX_INT (``default`` when absent or null)."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise AdminError(400, f"field {name!r} must be an integer")
    if not low <= value <= _MAX_INT:
        raise AdminError(400, f"field {name!r} must be between {low} and {_MAX_INT}")
    return value


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    """A JSON boolean: ``"false"`` would otherwise be truthy."""
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise AdminError(400, f"field {name!r} must be true or false")
    return value


def _set_fault(cloud: Cloud, body: dict[str, Any]) -> Reply:
    """``{"action": "CreateDisk"|"*", "code": "Throttling", "rate": 1.0, "count": 2,
    "latency_ms": 0}``: ``count`` limits how many calls fail (absent = no limit)."""
    name = _field(body, "action", str)
    code = body.get("code")
    if code is not None and code not in CATALOGUE:
        raise AdminError(400, f"unknown error code {code!r}")
    rate = _number(body, "rate", 1.0, high=1.0)
    count = _integer(body, "count", None)
    latency = _number(body, "latency_ms", 0.0)
    with cloud.store.tx() as db:
        db.execute(
            "INSERT OR REPLACE INTO faults VALUES(?, ?, ?, ?, ?)",
            (name, code, rate, count, latency),
        )
    return 200, {}


def _set_quotas(cloud: Cloud, body: dict[str, Any]) -> Reply:
    """``{"quotas": {"CreateDisk": 5, "*": 0, "AttachDisk": null}}``: calls per minute per
    action (``*`` the rest, 0 no quota, null back to the default)."""
    quotas = body.get("quotas")
    if not isinstance(quotas, dict):
        raise AdminError(400, "field 'quotas' must be an object of action: calls per minute")
    changes: dict[str, int | None] = {}
    for name in quotas:
        try:
            valid = parse_quotas(f"{name}=0") == {name: 0}
        except ValueError:
            valid = False
        if not valid:
            raise AdminError(400, f"{name[:40]!r} is not an ECS action name or '*'")
        changes[name] = _integer(quotas, name, None)
    cloud.quotas.set(changes)
    return 200, {"quotas": cloud.quotas.quotas()}


def _set_stock(cloud: Cloud, body: dict[str, Any]) -> Reply:
    """``{"zone": ..., "category": ..., "count": 0, "closed": false}``: disks of the category
    the place can still sell (``null``: no limit) and whether its supply is closed (low). The
    place of a regional category is the region id."""
    count = _integer(body, "count", None)
    closed = _flag(body, "closed", False)
    place = _field(body, "zone", str)
    category = _field(body, "category", str)
    if category not in ALL_CATEGORIES:
        raise AdminError(400, f"unknown category {category[:40]!r}")
    topology = cloud.topology
    if is_regional(category):
        if place != topology.region:
            raise AdminError(400, f"the stock of {category} is the region's: zone must be "
                                  f"{topology.region}")  # fmt: skip
    elif topology.zone(place) is None:
        raise AdminError(400, f"zone {place[:40]!r} is not one of the emulated zones")
    with cloud.store.tx() as db:
        stock.write(db, place, category, count, closed)
    return 200, {}


def _text(body: dict[str, Any], name: str, default: str = "") -> str:
    """An optional short string field."""
    value = body.get(name, default)
    if not isinstance(value, str) or len(value) > 256:
        raise AdminError(400, f"field {name!r} must be a string of at most 256 characters")
    return value


def _record_event(cloud: Cloud, instance_id: str, body: dict[str, Any]) -> Reply:
    """``{"type": "SystemFailure.Reboot", "status": "Executed", "reason": "...",
    "impact_level": "", "disk_id": "", "device": "", "not_before": <epoch seconds>}``: a
    system event DescribeInstanceHistoryEvents shows."""
    try:
        event_id = record_event(
            cloud,
            instance_id,
            _field(body, "type", str),
            _text(body, "status", "Executed"),
            reason=_text(body, "reason"),
            impact_level=_text(body, "impact_level"),
            disk_id=_text(body, "disk_id"),
            device=_text(body, "device"),
            not_before=_number(body, "not_before", None),
        )
    except ValueError as err:
        raise AdminError(400, str(err)) from None
    return 200, {"event_id": event_id}


def parse_body(raw: bytes) -> Any:
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise AdminError(400, "body is not JSON") from None
