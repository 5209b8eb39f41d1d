"""Every paid provider call of an output folder, kept in its ledger database: what was billed, used and wasted.

A call is recorded ``open`` the moment the provider answers its create (so a killed process's
successor collects it instead of paying again), then settles once: ``used`` (billed, its output
saved), ``wasted`` (billed, its output expired, was lost or refused) or ``unbilled`` (it ended
failed, canceled or aborted before producing anything). A call billed the moment it answers (a
vision model's answer: nothing is left to collect) is recorded settled in one step
(:meth:`PaidCalls.answered`). Stats add the money up from here. A call whose price is unknown (the
catalog says so, or the answer did not report its usage) is recorded with no price, and counted
as such: never as $0.00.
Each change is committed at once, on the caller's thread (a few milliseconds, no fsync in WAL mode).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .config import RunSummary
from .ledger import LEDGER_NAME

OPEN, USED, WASTED, UNBILLED = "open", "used", "wasted", "unbilled"

_TABLE = """
CREATE TABLE IF NOT EXISTS paid_calls (
    call_id TEXT PRIMARY KEY,
    task_key TEXT NOT NULL,
    model TEXT NOT NULL,
    price REAL,
    state TEXT NOT NULL DEFAULT 'open',
    created_at REAL NOT NULL,
    settled_at REAL,
    note TEXT
)"""
_INDEX = "CREATE INDEX IF NOT EXISTS paid_calls_open ON paid_calls (task_key, state)"


@dataclass(frozen=True)
class PaidCall:
    call_id: str
    task_key: str
    model: str
    price: float | None  # USD billed if it succeeds; None where the price is unknown


class PaidCalls:
    """The paid calls of the output folder ``root`` (in its ``ledger.sqlite``)."""

    def __init__(self, root: str | Path) -> None:
        path = Path(root) / LEDGER_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute(_TABLE)
        _allow_unknown_prices(self._db)
        self._db.execute(_INDEX)

    def close(self) -> None:
        self._db.close()

    def created(self, task_key: str, call_id: str, model: str, price: float | None) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO paid_calls (call_id, task_key, model, price, created_at) VALUES (?, ?, ?, ?, ?)",
            (call_id, task_key, model, price, time.time()),
        )

    def answered(self, task_key: str, call_id: str, model: str, price: float | None, state: str,
                 note: str | None = None) -> None:
        """Record a call that was billed as it answered, with its outcome (``used`` or ``wasted``), once."""
        if state not in (USED, WASTED):
            raise ValueError(f"an answered call is used or wasted, not {state!r}")
        now = time.time()
        self._db.execute(
            "INSERT OR IGNORE INTO paid_calls (call_id, task_key, model, price, state, created_at, settled_at, note) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (call_id, task_key, model, price, state, now, now, note),
        )

    def open_call(self, task_key: str) -> PaidCall | None:
        """The latest call of ``task_key`` whose outcome is not known yet."""
        row = self._db.execute(
            "SELECT call_id, task_key, model, price FROM paid_calls WHERE task_key = ? AND state = 'open' "
            "ORDER BY created_at DESC LIMIT 1",
            (task_key,),
        ).fetchone()
        return PaidCall(*row) if row else None

    def settle(self, call_id: str, state: str, note: str | None = None) -> None:
        """Give an open call its outcome; a settled call keeps the first one."""
        if state not in (USED, WASTED, UNBILLED):
            raise ValueError(f"unknown outcome {state!r}")
        self._db.execute(
            "UPDATE paid_calls SET state = ?, settled_at = ?, note = ? WHERE call_id = ? AND state = 'open'",
            (state, time.time(), note, call_id),
        )

    def settle_open(self, task_key: str, state: str, note: str | None = None) -> None:
        """Settle the open call of ``task_key``, if any (e.g. ``used`` once its result is saved)."""
        call = self.open_call(task_key)
        if call is not None:
            self.settle(call.call_id, state, note)


def _allow_unknown_prices(db: sqlite3.Connection) -> None:
    """Give a ledger from before unknown prices a nullable price column. Such a ledger recorded an
    unknown price as 0 (no paid call is free), so those calls become unpriced."""
    def price_required() -> bool:
        return any(row[1] == "price" and row[3] for row in db.execute("PRAGMA table_info(paid_calls)"))

    if not price_required():
        return
    with db:
        db.execute("BEGIN IMMEDIATE")
        if not price_required():
            return  # another process moved it meanwhile
        db.execute("ALTER TABLE paid_calls RENAME TO paid_calls_before_unknown_prices")
        db.execute("DROP INDEX IF EXISTS paid_calls_open")
        db.execute(_TABLE)
        db.execute("INSERT INTO paid_calls SELECT call_id, task_key, model, NULLIF(price, 0), state, created_at, "
                   "settled_at, note FROM paid_calls_before_unknown_prices")
        db.execute("DROP TABLE paid_calls_before_unknown_prices")


def money(db: sqlite3.Connection, *, since: float | None = None) -> dict | None:
    """Billed, used and wasted USD and call counts of the paid calls in ``db`` (those created at or
    after ``since`` when given); None when none were recorded. ``unpriced_calls`` counts the billed
    calls whose price is unknown (their money is in no figure), ``unpriced_models`` names their models
    and ``unpriced_by_model`` counts them per model."""
    where, args = ("WHERE created_at >= ?", (since,)) if since is not None else ("", ())
    try:
        rows = db.execute(f"SELECT state, COUNT(*), TOTAL(price) FROM paid_calls {where} GROUP BY state",
                          args).fetchall()
        unpriced = db.execute(f"SELECT model, COUNT(*) FROM paid_calls {where} {'AND' if where else 'WHERE'} "
                              "price IS NULL AND state IN ('used', 'wasted') GROUP BY model ORDER BY model",
                              args).fetchall()
    except sqlite3.OperationalError:  # no paid call was ever recorded in this folder
        return None
    if not rows:
        return None
    count = {state: 0 for state in (OPEN, USED, WASTED, UNBILLED)}
    usd = dict.fromkeys(count, 0.0)
    for state, n, total in rows:
        count[state], usd[state] = n, total
    return {
        "billed_cost_usd": round(usd[USED] + usd[WASTED], 4),
        "used_cost_usd": round(usd[USED], 4),
        "wasted_cost_usd": round(usd[WASTED], 4),
        "billed_calls": count[USED] + count[WASTED],
        "used_calls": count[USED],
        "wasted_calls": count[WASTED],
        "unbilled_calls": count[UNBILLED],
        "open_calls": count[OPEN],
        "unpriced_calls": sum(n for _, n in unpriced),
        "unpriced_models": [model for model, _ in unpriced],
        "unpriced_by_model": dict(unpriced),
    }


def unpriced_note(money: dict, *, lead: str = "") -> str:
    """``lead`` + ``20 topazlabs/image-upscale and 3 gpt-4.1-mini calls at an unknown price``, or "" when
    every billed call of ``money`` (see :func:`money`) had a price."""
    if not money.get("unpriced_calls"):
        return ""
    counted = " and ".join(f"{count} {model}" for model, count in money["unpriced_by_model"].items())
    return f"{lead}{counted} calls at an unknown price"


def with_paid_calls(summary: RunSummary, ledger_path: Path, *, since: float) -> RunSummary:
    """``summary`` with the spend of the paid calls its run made, where the folder keeps a book of
    them: everything created since ``since`` that was billed, the calls of failed tasks and of
    sub-tasks included, and the billed calls whose price is unknown named; else ``summary`` as it is."""
    with contextlib.closing(sqlite3.connect(ledger_path)) as db:
        this_run = money(db, since=since)
    if this_run is None:
        return summary
    return dataclasses.replace(summary, progress=summary.progress.evolve(spent=this_run["billed_cost_usd"]),
                               unpriced=unpriced_note(this_run))
