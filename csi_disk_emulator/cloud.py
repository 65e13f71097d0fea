"""The emulated cloud: state, asynchronous transitions, credentials, faults and devices.

Actions, the metadata service and the admin API all work through one ``Cloud``. Pending
transitions are rows with a due time, so a restart after kill -9 simply resumes them.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import secrets
import sqlite3
import string
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csi_disk_emulator.blockdev import BlockDeviceError, BlockDevices
from csi_disk_emulator.errors import EcsError
from csi_disk_emulator.quotas import Quotas
from csi_disk_emulator.topology import INSTANCE_TYPES, InstanceType, Topology

log = logging.getLogger(__name__)

TIMESTAMP_WINDOW_S = 15 * 60
DEVICE_LETTERS = string.ascii_lowercase[1:]


@dataclass
class Latency:
    """Seconds each transition takes before ``scale`` is applied."""

    create: float = 1.0
    attach: float = 2.0
    detach: float = 2.0
    snapshot: float = 5.0
    modify: float = 2.0
    modify_cooling: float = 30.0
    scale: float = 1.0


@dataclass
class _Bucket:
    per_second: float
    tokens: float
    updated: float


@dataclass
class Options:
    latency: Latency = field(default_factory=Latency)
    seed: int = 0
    credential_lifetime_s: float = 6 * 3600
    block_devices: bool = False
    api_quotas: dict[str, int] = field(default_factory=dict)  # over the driver's defaults


# Transitions that action modules add (snapshots completing, spec changes landing): each
# completes what is due at ``now`` inside the worker's transaction and returns when its next
# one is due (None: nothing pending). Rows with due times keep them restart-safe.
Transition = Callable[[sqlite3.Connection, float], "float | None"]
TRANSITIONS: list[Transition] = []


def transition(fn: Transition) -> Transition:
    """Register ``fn`` with the transition worker."""
    TRANSITIONS.append(fn)
    return fn


def iso(ts: float) -> str:
    """ECS time format: UTC, minute precision for resources, seconds for credentials."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Cloud:
    """One emulated region backed by a state directory."""

    def __init__(self, state_dir: Path, store: Any, topology: Topology, options: Options) -> None:
        self.state_dir = state_dir
        self.store = store
        self.topology = topology
        self.options = options
        self.devices = BlockDevices(state_dir, options.block_devices)
        self.fault_rng = random.Random(options.seed)
        self._dev_lock = threading.Lock()
        self._wake = threading.Condition()
        self._stop = threading.Event()
        # Request threads share the buckets: read-modify-write under one lock, or two
        # concurrent calls can both spend the last token.
        self._buckets: dict[str, _Bucket] = {}
        self._bucket_lock = threading.Lock()
        self.quotas = Quotas(options.api_quotas)
        self.metadata_calls: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._run, name="transitions", daemon=True)

    # ----- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self.reconcile()
        self._thread.start()

    def stop(self, release_devices: bool) -> None:
        """Stop the transition worker; on a clean shutdown also release loop devices
        (the attachments stay recorded, so the next start re-creates them)."""
        self._stop.set()
        self.wake()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if release_devices:
            with self._dev_lock:
                for loop, backing in self.devices.our_loop_devices().items():
                    self._safe(self.devices.detach, backing.stem, "", loop)
                with self.store.tx() as db:
                    for row in db.execute("SELECT id FROM instances").fetchall():
                        self.devices.clear_published(row["id"])

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # ----- ids and lookups -------------------------------------------------------------

    def new_id(self, db: sqlite3.Connection, prefix: str) -> str:
        """Seeded, yet unique across restarts: the counter lives in the state."""
        row = db.execute("SELECT value FROM meta WHERE key='id_counter'").fetchone()
        counter = json.loads(row["value"]) if row else 0
        db.execute(
            "INSERT INTO meta(key, value) VALUES('id_counter', ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (json.dumps(counter + 1),),
        )
        rng = random.Random(f"{self.options.seed}:{prefix}:{counter}")
        alphabet = string.ascii_lowercase + string.digits
        return prefix + "".join(rng.choice(alphabet) for _ in range(20))

    def instance_type(self, name: str) -> InstanceType:
        return INSTANCE_TYPES[name]

    def get_instance(self, db: sqlite3.Connection, instance_id: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM instances WHERE id=?", (instance_id,)).fetchone()
        if row is None:
            raise EcsError("InvalidInstanceId.NotFound")
        return row

    def get_disk(self, db: sqlite3.Connection, disk_id: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM disks WHERE id=?", (disk_id,)).fetchone()
        if row is None:
            raise EcsError("InvalidDiskId.NotFound")
        return row

    def attachments(self, db: sqlite3.Connection, disk_id: str) -> list[sqlite3.Row]:
        return db.execute(
            "SELECT * FROM attachments WHERE disk_id=? ORDER BY rowid", (disk_id,)
        ).fetchall()

    @staticmethod
    def disk_status(disk: sqlite3.Row, attachments: list[sqlite3.Row]) -> str:
        """The Status ECS shows: pending transitions win over settled ones."""
        if disk["status"] != "Available":
            return str(disk["status"])
        states = {a["state"] for a in attachments}
        for pending in ("Attaching", "Detaching"):
            if pending in states:
                return pending
        return "In_use" if states else "Available"

    def due(self, seconds: float) -> float:
        return time.time() + seconds * self.options.latency.scale

    def free_device(self, db: sqlite3.Connection, instance_id: str) -> str:
        used = {
            r["device"]
            for r in db.execute(
                "SELECT device FROM attachments WHERE instance_id=?", (instance_id,)
            )
        }
        for letter in DEVICE_LETTERS:
            name = f"/dev/xvd{letter}"
            if name not in used:
                return name
        for first in DEVICE_LETTERS:
            for second in string.ascii_lowercase:
                name = f"/dev/xvd{first}{second}"
                if name not in used:
                    return name
        raise EcsError("InstanceDiskLimitExceeded")

    # ----- transitions -----------------------------------------------------------------

    def _run(self) -> None:
        last_cleanup = 0.0
        while not self._stop.is_set():
            try:
                next_due = self._complete_due()
                if time.time() - last_cleanup > 60:
                    self._cleanup()
                    last_cleanup = time.time()
            except Exception:
                log.exception("transition worker failed; retrying")
                next_due = time.time() + 0.5
            timeout = 0.5 if next_due is None else max(0.0, min(0.5, next_due - time.time()))
            with self._wake:
                if not self._stop.is_set() and timeout > 0:
                    self._wake.wait(timeout)

    def _complete_due(self) -> float | None:
        now = time.time()
        with self.store.tx() as db:
            db.execute(
                "UPDATE disks SET status='Available', due=NULL "
                "WHERE status='Creating' AND stuck=0 AND due<=?",
                (now,),
            )
            pending = db.execute(
                "SELECT a.*, i.status AS instance_status, i.instance_type FROM attachments a "
                "JOIN disks d ON d.id=a.disk_id JOIN instances i ON i.id=a.instance_id "
                "WHERE a.state IN ('Attaching','Detaching') AND d.stuck=0 AND a.due<=? "
                "ORDER BY a.due",
                (now,),
            ).fetchall()
        for row in pending:
            if row["state"] == "Attaching":
                self._finish_attach(row)
            else:
                self._finish_detach(row)
        extra: list[float] = []
        with self.store.tx() as db:
            for fn in TRANSITIONS:
                due = fn(db, now)
                if due is not None:
                    extra.append(due)
        with self.store.tx() as db:
            nxt = db.execute(
                "SELECT MIN(t) AS t FROM ("
                " SELECT MIN(due) AS t FROM disks WHERE status='Creating' AND stuck=0"
                " UNION ALL SELECT MIN(a.due) FROM attachments a JOIN disks d ON d.id=a.disk_id"
                " WHERE a.state IN ('Attaching','Detaching') AND d.stuck=0)"
            ).fetchone()
        if nxt["t"] is not None:
            extra.append(float(nxt["t"]))
        return min(extra) if extra else None

    def _finish_attach(self, row: sqlite3.Row) -> None:
        loop = None
        with self._dev_lock:
            if row["instance_status"] == "Running":
                bus = self.instance_type(row["instance_type"]).bus
                loop = self._safe(self.devices.attach, row["disk_id"], row["instance_id"], bus)
            with self.store.tx() as db:
                db.execute(
                    "UPDATE attachments SET state='Attached', due=NULL, attached_time=?, loop=? "
                    "WHERE disk_id=? AND instance_id=? AND state='Attaching'",
                    (time.time(), loop, row["disk_id"], row["instance_id"]),
                )

    def _finish_detach(self, row: sqlite3.Row) -> None:
        with self._dev_lock:
            with self.store.tx() as db:
                still = db.execute(
                    "SELECT 1 FROM attachments WHERE disk_id=? AND instance_id=? "
                    "AND state='Detaching'",
                    (row["disk_id"], row["instance_id"]),
                ).fetchone()
            if still is None:  # a force attach took the disk meanwhile
                return
            self._safe(self.devices.detach, row["disk_id"], row["instance_id"], row["loop"])
            with self.store.tx() as db:
                db.execute(
                    "DELETE FROM attachments "
                    "WHERE disk_id=? AND instance_id=? AND state='Detaching'",
                    (row["disk_id"], row["instance_id"]),
                )

    def drop_device(self, disk_id: str, instance_id: str, loop: str | None) -> None:
        """Remove an attachment's device from its instance at once (a force attach moved the
        disk away, or the instance is gone)."""
        with self._dev_lock:
            self._safe(self.devices.detach, disk_id, instance_id, loop)

    @staticmethod
    def _safe(fn: Any, *args: Any) -> Any:
        """Device trouble is logged, not fatal: reconcile repairs it on the next start."""
        try:
            return fn(*args)
        except (BlockDeviceError, OSError) as exc:
            log.error("block device operation failed: %s", exc)
            return None

    def _cleanup(self) -> None:
        cutoff = time.time() - 2 * TIMESTAMP_WINDOW_S
        with self.store.tx() as db:
            db.execute("DELETE FROM nonces WHERE seen<?", (cutoff,))
            db.execute("DELETE FROM metadata_tokens WHERE expires<?", (time.time(),))

    def reconcile(self) -> None:
        """Make loop devices and published links match the recorded attachments."""
        with self._dev_lock:
            with self.store.tx() as db:
                rows = db.execute(
                    "SELECT a.disk_id, a.instance_id, a.loop, i.status, i.instance_type "
                    "FROM attachments a JOIN instances i ON i.id=a.instance_id "
                    "WHERE a.state IN ('Attached','Detaching')"
                ).fetchall()
                instances = [r["id"] for r in db.execute("SELECT id FROM instances")]
            wanted = {r["disk_id"]: r for r in rows if r["status"] == "Running"}
            kept: dict[str, str] = {}
            for loop, backing in self.devices.our_loop_devices().items():
                row = wanted.get(backing.stem)
                if row is not None and row["loop"] == loop and backing.stem not in kept:
                    kept[backing.stem] = loop
                else:
                    self._safe(self.devices.detach, backing.stem, "", loop)
            for instance_id in instances:
                self.devices.clear_published(instance_id)
            updates = []
            for row in rows:
                if row["status"] != "Running":
                    updates.append((None, row["disk_id"], row["instance_id"]))
                    continue
                bus = self.instance_type(row["instance_type"]).bus
                loop = kept.get(row["disk_id"])
                if loop is not None:
                    self.devices.publish(row["disk_id"], row["instance_id"], bus, loop)
                else:
                    loop = self._safe(self.devices.attach, row["disk_id"], row["instance_id"], bus)
                updates.append((loop, row["disk_id"], row["instance_id"]))
            with self.store.tx() as db:
                db.executemany(
                    "UPDATE attachments SET loop=? WHERE disk_id=? AND instance_id=?", updates
                )

    # ----- instances (admin) -----------------------------------------------------------

    def set_instance_status(self, instance_id: str, status: str) -> None:
        """Stop/start: attachments stay recorded (as on ECS); devices follow the VM."""
        with self.store.tx() as db:
            self.get_instance(db, instance_id)
            db.execute("UPDATE instances SET status=? WHERE id=?", (status, instance_id))
        self.reconcile()

    def release_instance(self, instance_id: str) -> None:
        """Release: attached disks become Available, DeleteWithInstance ones are deleted."""
        with self.store.tx() as db:
            self.get_instance(db, instance_id)
            rows = db.execute(
                "SELECT a.disk_id, a.loop, d.delete_with_instance FROM attachments a "
                "JOIN disks d ON d.id=a.disk_id WHERE a.instance_id=?",
                (instance_id,),
            ).fetchall()
        with self._dev_lock:
            for row in rows:
                self._safe(self.devices.detach, row["disk_id"], instance_id, row["loop"])
        with self.store.tx() as db:
            db.execute("DELETE FROM attachments WHERE instance_id=?", (instance_id,))
            db.execute("DELETE FROM instances WHERE id=?", (instance_id,))
            doomed = [r["disk_id"] for r in rows if r["delete_with_instance"]]
            for disk_id in doomed:
                if not self.attachments(db, disk_id):
                    db.execute("DELETE FROM disks WHERE id=?", (disk_id,))
        for disk_id in doomed:
            self.devices.delete(disk_id)

    # ----- authentication --------------------------------------------------------------

    def account_keys(self) -> dict[str, str]:
        return dict(self.store.get_meta("access_keys") or {})

    def remember_nonce(self, nonce: str) -> bool:
        """False when the nonce was seen within the replay window."""
        try:
            with self.store.tx() as db:
                db.execute("INSERT INTO nonces(nonce, seen) VALUES(?, ?)", (nonce, time.time()))
        except sqlite3.IntegrityError:
            return False
        return True

    def sts_credential(self, access_key_id: str) -> sqlite3.Row | None:
        with self.store.tx() as db:
            return db.execute(
                "SELECT * FROM credentials WHERE access_key_id=?", (access_key_id,)
            ).fetchone()

    def role_credentials(self, instance_id: str) -> dict[str, str]:
        """The instance's current RAM role credentials, rotated once a third of their
        lifetime remains (ECS hands out fresh ones well before expiry)."""
        lifetime = self.options.credential_lifetime_s
        now = time.time()
        with self.store.tx() as db:
            inst = self.get_instance(db, instance_id)
            row = db.execute(
                "SELECT * FROM credentials WHERE instance_id=? AND role=? "
                "ORDER BY issued DESC LIMIT 1",
                (instance_id, inst["ram_role"]),
            ).fetchone()
            if row is None or row["expires"] - now < lifetime / 3:
                key = "STS." + secrets.token_hex(12)
                secret = secrets.token_urlsafe(24)
                token = base64.b64encode(secrets.token_bytes(96)).decode()
                db.execute(
                    "INSERT INTO credentials VALUES(?, ?, ?, ?, ?, ?, ?)",
                    (key, secret, token, instance_id, inst["ram_role"], now, now + lifetime),
                )
                row = db.execute(
                    "SELECT * FROM credentials WHERE access_key_id=?", (key,)
                ).fetchone()
        return {
            "AccessKeyId": row["access_key_id"],
            "AccessKeySecret": row["secret"],
            "SecurityToken": row["token"],
            "Expiration": iso(row["expires"]),
            "LastUpdated": iso(row["issued"]),
            "Code": "Success",
        }

    def expire_credentials(self, instance_id: str | None) -> int:
        with self.store.tx() as db:
            if instance_id:
                cur = db.execute(
                    "UPDATE credentials SET expires=? WHERE instance_id=?",
                    (time.time() - 1, instance_id),
                )
            else:
                cur = db.execute("UPDATE credentials SET expires=?", (time.time() - 1,))
            return cur.rowcount

    # ----- calls, faults, throttling ---------------------------------------------------

    def sticky(self, db: sqlite3.Connection, action: str) -> int:
        """1 when the admin API asked that transitions started by ``action`` hang."""
        row = db.execute("SELECT value FROM meta WHERE key='sticky_actions'").fetchone()
        return int(row is not None and action in json.loads(row["value"]))

    def count_call(self, action: str) -> None:
        with self.store.tx() as db:
            db.execute(
                "INSERT INTO calls(action, count) VALUES(?, 1) "
                "ON CONFLICT(action) DO UPDATE SET count=count+1",
                (action,),
            )

    def count_metadata(self, path: str) -> None:
        """One metadata service request (kept in memory: only tests and benchmarks ask)."""
        with self._bucket_lock:
            self.metadata_calls[path.strip("/")[:100]] += 1

    def metadata_counts(self) -> dict[str, int]:
        with self._bucket_lock:
            return dict(self.metadata_calls)

    def forget_counts(self) -> None:
        """Forget the ECS calls served, throttled and the metadata requests counted."""
        with self.store.tx() as db:
            db.execute("DELETE FROM calls")
        self.quotas.forget_throttled()
        with self._bucket_lock:
            self.metadata_calls.clear()

    def throttle(self, access_key_id: str) -> None:
        """A token bucket per access key, configured through the admin API."""
        with self.store.tx() as db:
            row = db.execute(
                "SELECT per_second FROM throttles WHERE access_key_id=?", (access_key_id,)
            ).fetchone()
        with self._bucket_lock:
            if row is None:
                self._buckets.pop(access_key_id, None)
                return
            now = time.monotonic()
            rate = float(row["per_second"])
            bucket = self._buckets.get(access_key_id)
            if bucket is None or bucket.per_second != rate:
                bucket = self._buckets[access_key_id] = _Bucket(rate, max(rate, 1.0), now)
            bucket.tokens = min(max(rate, 1.0), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens < 1.0:
                raise EcsError("Throttling.User")
            bucket.tokens -= 1.0

    def inject_fault(self, action: str) -> float:
        """Raise the configured error for ``action`` (or ``*``); return added latency (s)."""
        code = None
        latency = 0.0
        with self.store.tx() as db:
            rows = db.execute(
                "SELECT * FROM faults WHERE action IN (?, '*') ORDER BY action='*'", (action,)
            ).fetchall()
            for row in rows:
                latency += float(row["latency_ms"]) / 1000
                if code or not row["code"] or row["remaining"] == 0:
                    continue
                if self.fault_rng.random() >= float(row["rate"]):
                    continue
                if row["remaining"] is not None:
                    db.execute(
                        "UPDATE faults SET remaining=remaining-1 WHERE action=?", (row["action"],)
                    )
                code = str(row["code"])
        if latency:
            time.sleep(latency)
        if code:
            raise EcsError(code)
        return latency
