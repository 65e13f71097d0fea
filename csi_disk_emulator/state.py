"""The emulator's durable state: one sqlite file, written in transactions.

WAL with synchronous=FULL and one lock around the single connection: a kill -9 at any
moment leaves either the state before a call or the state after it, never half of one,
which is what makes the restart tests (and a driver's crash-recovery tests) meaningful.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY, zone TEXT NOT NULL, instance_type TEXT NOT NULL,
    status TEXT NOT NULL, ram_role TEXT NOT NULL, max_attaching INTEGER NOT NULL,
    max_detaching INTEGER NOT NULL, token_required INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS disks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, zone TEXT NOT NULL,
    category TEXT NOT NULL, performance_level TEXT NOT NULL, size INTEGER NOT NULL,
    status TEXT NOT NULL, due REAL, stuck INTEGER NOT NULL DEFAULT 0,
    name TEXT NOT NULL, description TEXT NOT NULL, encrypted INTEGER NOT NULL,
    kms_key_id TEXT NOT NULL, resource_group_id TEXT NOT NULL, multi_attach INTEGER NOT NULL,
    provisioned_iops INTEGER NOT NULL, bursting INTEGER NOT NULL, snapshot_id TEXT NOT NULL,
    delete_with_instance INTEGER NOT NULL DEFAULT 0, tags TEXT NOT NULL, created REAL NOT NULL,
    attrs TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS attachments (
    disk_id TEXT NOT NULL, instance_id TEXT NOT NULL, device TEXT NOT NULL,
    state TEXT NOT NULL, due REAL, attached_time REAL, loop TEXT,
    PRIMARY KEY (disk_id, instance_id));
CREATE TABLE IF NOT EXISTS client_tokens (
    action TEXT NOT NULL, token TEXT NOT NULL, fingerprint TEXT NOT NULL, result TEXT,
    PRIMARY KEY (action, token));
CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS credentials (
    access_key_id TEXT PRIMARY KEY, secret TEXT NOT NULL, token TEXT NOT NULL,
    instance_id TEXT NOT NULL, role TEXT NOT NULL, issued REAL NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS metadata_tokens (
    token TEXT PRIMARY KEY, instance_id TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS calls (action TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS faults (
    action TEXT PRIMARY KEY, code TEXT, rate REAL NOT NULL, remaining INTEGER,
    latency_ms REAL NOT NULL);
CREATE TABLE IF NOT EXISTS stock (
    zone TEXT NOT NULL, category TEXT NOT NULL, remaining INTEGER NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (zone, category));
CREATE TABLE IF NOT EXISTS throttles (access_key_id TEXT PRIMARY KEY, per_second REAL NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, disk_id TEXT NOT NULL,
    disk_category TEXT NOT NULL, size INTEGER NOT NULL, status TEXT NOT NULL, due REAL,
    stuck INTEGER NOT NULL DEFAULT 0, name TEXT NOT NULL, description TEXT NOT NULL,
    retention_days INTEGER, tags TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, action TEXT NOT NULL,
    resource_id TEXT NOT NULL, status TEXT NOT NULL, created REAL NOT NULL, due REAL,
    finished REAL, error_code TEXT NOT NULL DEFAULT '', error_message TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, instance_id TEXT NOT NULL,
    event_type TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL,
    impact_level TEXT NOT NULL, disk_id TEXT NOT NULL, device TEXT NOT NULL,
    published REAL NOT NULL, not_before REAL NOT NULL, finished REAL);
"""


class Store:
    """A serialised sqlite connection: every read and write goes through ``tx``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Columns added since a state directory was first written."""
        columns = {r["name"] for r in self._conn.execute("PRAGMA table_info(stock)")}
        if "closed" not in columns:
            self._conn.execute("ALTER TABLE stock ADD COLUMN closed INTEGER NOT NULL DEFAULT 0")

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction under the store lock; rolled back if the body raises."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def get_meta(self, key: str) -> Any:
        with self.tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row["value"])

    def set_meta(self, key: str, value: Any) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO meta(key, value) VALUES(?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, json.dumps(value)),
            )
