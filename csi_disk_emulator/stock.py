"""Stock: how many disks of a category a zone (or, for regional categories, the region) can
still sell, and how ECS reports it.

DescribeAvailableResource reports stock as a ``Status`` (``Available`` or ``SoldOut``) and a
``StatusCategory``: ``WithStock`` (enough), ``ClosedWithStock`` (low, prefer another),
``WithoutStock`` (sold out, to be replenished) or ``ClosedWithoutStock`` (sold out for good).
CreateDisk sells while there is stock, closed or not, and answers ``OperationDenied.NoStock``
once there is none. Without a row, a place has stock without limit; the admin API sets rows
at run time.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from csi_disk_emulator.errors import EcsError

WITH_STOCK = "WithStock"
CLOSED_WITH_STOCK = "ClosedWithStock"
WITHOUT_STOCK = "WithoutStock"
CLOSED_WITHOUT_STOCK = "ClosedWithoutStock"
STATUS_CATEGORIES = (WITH_STOCK, CLOSED_WITH_STOCK, WITHOUT_STOCK, CLOSED_WITHOUT_STOCK)
UNLIMITED = 2**31 - 1  # a row that only closes a place keeps its stock unlimited


@dataclass(frozen=True)
class Stock:
    """The stock of one category in one place (a zone id, or the region id)."""

    remaining: int = UNLIMITED
    closed: bool = False

    @property
    def available(self) -> bool:
        return self.remaining > 0

    @property
    def status(self) -> str:
        return "Available" if self.available else "SoldOut"

    @property
    def status_category(self) -> str:
        if self.available:
            return CLOSED_WITH_STOCK if self.closed else WITH_STOCK
        return CLOSED_WITHOUT_STOCK if self.closed else WITHOUT_STOCK


def read(db: sqlite3.Connection, place: str, category: str) -> Stock:
    row = db.execute(
        "SELECT remaining, closed FROM stock WHERE zone=? AND category=?", (place, category)
    ).fetchone()
    if row is None:
        return Stock()
    return Stock(int(row["remaining"]), bool(row["closed"]))


def read_all(db: sqlite3.Connection) -> dict[tuple[str, str], Stock]:
    rows = db.execute("SELECT zone, category, remaining, closed FROM stock").fetchall()
    return {(r["zone"], r["category"]): Stock(int(r["remaining"]), bool(r["closed"])) for r in rows}


def sell_one(db: sqlite3.Connection, place: str, category: str) -> None:
    """Take one disk from the stock, or refuse with NoStock as CreateDisk does."""
    stock = read(db, place, category)
    if not stock.available:
        raise EcsError("OperationDenied.NoStock")
    if stock.remaining < UNLIMITED:
        db.execute(
            "UPDATE stock SET remaining=remaining-1 WHERE zone=? AND category=?",
            (place, category),
        )


def write(
    db: sqlite3.Connection, place: str, category: str, count: int | None, closed: bool
) -> None:
    """Set a place's stock: ``count`` disks left (None: no limit), ``closed`` to low supply."""
    if count is None and not closed:
        db.execute("DELETE FROM stock WHERE zone=? AND category=?", (place, category))
        return
    remaining = UNLIMITED if count is None else count
    db.execute(
        "INSERT OR REPLACE INTO stock(zone, category, remaining, closed) VALUES(?, ?, ?, ?)",
        (place, category, remaining, int(closed)),
    )
