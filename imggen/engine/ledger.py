"""The durable record of every task of one output folder: an SQLite database in WAL mode.

One row per task key holds its payload, status, attempts, error, outputs, timings, cost and
provenance. Resume is reopening the file. Each state change is committed at once, so a killed
process loses at most the tasks it had in flight, which go back to ``pending`` on the next open.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson

from .errors import ErrorKind
from .ledger_schema import ADDED_COLUMNS, SCHEMA, TASKS_TABLE, UPSERT
from .rounds import Round
from .sqlite_book import SqliteBook
from .tasks import Outcome, Task

LEDGER_NAME = "ledger.sqlite"
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
TASKS = "tasks"  # the table of a run's own tasks

@dataclass(frozen=True)
class LedgerRow:
    """A task as read back from the ledger for running."""

    seq: int
    task: Task


def has_table(root: str | Path, table: str) -> bool:
    """Whether the ledger in ``root`` has a table of tasks ``table`` (nothing is created)."""
    path = Path(root) / LEDGER_NAME
    if not path.is_file():
        return False
    with contextlib.closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)) as db:
        return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None


def recorded_rounds(root: str | Path) -> dict[str, Round]:
    """The rounds recorded in the ledger of ``root``; none when it has no ledger (nothing is created)."""
    if not (Path(root) / LEDGER_NAME).is_file():
        return {}
    with Ledger(root) as ledger:
        return ledger.rounds()


class Ledger(SqliteBook):
    """Open (or create) the ledger of an output folder. Use from one thread; reopen elsewhere to read."""

    def __init__(self, root: str | Path, *, name: str = LEDGER_NAME, table: str = TASKS) -> None:
        """``table``: the run's own tasks, or another table of tasks in the same file (sub-tasks: a
        training set's grids), which share its runs and rounds."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / name
        self._table = table
        super().__init__(self.path, SCHEMA + TASKS_TABLE.format(table=table), pragmas=(
            "journal_mode=WAL",
            "synchronous=NORMAL",  # durable across a killed process
            "cache_size=-65536",  # 64 MiB: keeps the key index of a big plan in memory
        ))
        self._add_new_columns()

    def _add_new_columns(self) -> None:
        """Give a ledger written by an earlier version the columns added since (see ``ADDED_COLUMNS``)."""
        present = {row[1] for row in self._db.execute(f"PRAGMA table_info({self._table})")}
        for name, declaration in ADDED_COLUMNS.items():
            if name not in present:
                try:
                    self._db.execute(f"ALTER TABLE {self._table} ADD COLUMN {name} {declaration}")
                except sqlite3.OperationalError as error:  # another process added it first
                    if "duplicate column" not in str(error):
                        raise

    def adopt(self, path: Path) -> None:
        """Move the tasks an earlier layout kept in a ledger file of their own, ``path``, into this table
        once, keeping those already here; the file (with its -wal and -shm) is renamed ``*.moved``."""
        if not path.is_file():
            return
        self._db.execute("ATTACH DATABASE ? AS adopted", (str(path),))
        try:
            columns = ", ".join(row[1] for row in self._db.execute(f"PRAGMA adopted.table_info({TASKS})"))
            self._db.execute(f"INSERT OR IGNORE INTO {self._table} ({columns}) SELECT {columns} FROM adopted.{TASKS}")
        finally:
            self._db.execute("DETACH DATABASE adopted")
        for leftover in path.parent.glob(f"{path.name}*"):
            leftover.rename(leftover.with_name(leftover.name.replace(path.name, f"{path.name}.moved")))

    # -- runs -----------------------------------------------------------------------------
    def begin_run(self) -> int:
        """Start a run: tasks left ``running`` by a killed process go back to ``pending``."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(f"UPDATE {self._table} SET status = 'pending' WHERE status = 'running'")
            self._db.execute(
                "UPDATE runs SET state = 'interrupted', finished_at = started_at WHERE finished_at IS NULL"
            )
            cursor = self._db.execute("INSERT INTO runs (started_at) VALUES (?)", (time.time(),))
        return int(cursor.lastrowid)

    def end_run(self, run_id: int, state: str, message: str | None = None) -> None:
        self._db.execute(
            "UPDATE runs SET finished_at = ?, state = ?, message = ? WHERE id = ?",
            (time.time(), state, message, run_id),
        )

    def run_durations(self) -> tuple[float | None, float | None, float]:
        """First start, last finish, and the summed wall time of every run."""
        first, last, total = self._db.execute(
            "SELECT MIN(started_at), MAX(finished_at), TOTAL(finished_at - started_at) FROM runs"
        ).fetchone()
        return first, last, float(total or 0.0)

    # -- rounds (see :mod:`.rounds`) -------------------------------------------------------
    def rounds(self) -> dict[str, Round]:
        """Each scope's recorded round and settings."""
        rows = self._db.execute("SELECT scope, number, settings FROM rounds")
        return {scope: Round(number, json.loads(settings)) for scope, number, settings in rows}

    def record_rounds(self, rounds: dict[str, Round]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO rounds (scope, number, settings) VALUES (?, ?, ?) ON CONFLICT(scope) DO UPDATE SET "
                "number = excluded.number, settings = excluded.settings",
                [(scope, kept.number, json.dumps(kept.settings)) for scope, kept in rounds.items()],
            )

    # -- planning -------------------------------------------------------------------------
    def plan(self, tasks: Iterable[Task], run_id: int, *, retry_failed: bool = False) -> int:
        """Record ``tasks`` as this run's plan, keeping finished work. Returns how many were planned.

        Finished keys are read into memory first and skipped in Python, so resuming a large finished
        job costs a set lookup per task instead of a database write.
        """
        done = set(self.keys(DONE))
        planned = 0

        def rows() -> Iterator[tuple[Any, ...]]:
            nonlocal planned
            for task in tasks:
                planned += 1
                if task.key in done:
                    continue
                outputs = orjson.dumps(task.outputs) if task.outputs else b"[]"
                yield task.key, orjson.dumps(task.payload), outputs, task.cost, run_id, retry_failed

        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(UPSERT.format(table=self._table), rows())
        return planned

    def pending(self, run_id: int, *, page: int = 1000) -> Iterator[LedgerRow]:
        """Yield the pending tasks run ``run_id`` planned, in plan order, reading a page at a time.

        Pages walk the table in ``seq`` order, so a whole run reads each row at most once; an extra
        index on plan and status would cost more at planning than it saves here.
        """
        after = 0
        while True:
            rows = self._db.execute(
                f"SELECT seq, key, payload, outputs, est_cost FROM {self._table} "
                "WHERE plan = ? AND status = 'pending' AND seq > ? ORDER BY seq LIMIT ?",
                (run_id, after, page),
            ).fetchall()
            if not rows:
                return
            for seq, key, payload, outputs, est_cost in rows:
                yield LedgerRow(seq, Task(key, json.loads(payload), tuple(json.loads(outputs)), est_cost))
            after = rows[-1][0]

    # -- state changes (each one committed) -----------------------------------------------
    def mark_started(self, key: str) -> None:
        self._db.execute(
            f"UPDATE {self._table} SET status = 'running', attempts = attempts + 1, "
            "started_at = COALESCE(started_at, ?) WHERE key = ?",
            (time.time(), key),
        )

    def note_attempt_error(self, key: str, kind: ErrorKind, message: str, *, connection_error: bool,
                           billed: float = 0.0) -> None:
        """A failed attempt; ``billed``: what its answer was billed though it could not be used (wasted)."""
        self._db.execute(
            f"UPDATE {self._table} SET rate_limit_hits = rate_limit_hits + ?, "
            "connection_errors = connection_errors + ?, error_kind = ?, error = ?, cost = cost + ?, "
            "wasted = wasted + ? WHERE key = ?",
            (kind is ErrorKind.RATE_LIMITED, connection_error, kind.value, message, billed, billed, key),
        )

    def mark_done(self, key: str, outcome: Outcome, *, healed: bool = False) -> None:
        now = time.time()
        self._db.execute(
            f"UPDATE {self._table} SET status = 'done', outputs = ?, cost = cost + ?, provenance = ?, healed = ?, "
            "error_kind = NULL, error = NULL, finished_at = ?, duration_s = ? - COALESCE(started_at, ?) "
            "WHERE key = ?",
            (json.dumps(list(outcome.outputs)), outcome.cost,
             json.dumps(outcome.provenance, default=str) if outcome.provenance else None, healed, now, now, now, key),
        )

    def mark_failed(self, key: str, kind: ErrorKind, message: str) -> None:
        now = time.time()
        self._db.execute(
            f"UPDATE {self._table} SET status = 'failed', error_kind = ?, error = ?, finished_at = ?, "
            "duration_s = ? - COALESCE(started_at, ?) WHERE key = ?",
            (kind.value, message, now, now, now, key),
        )

    def release(self, key: str) -> None:
        """Put an interrupted task back to ``pending`` (it was stopped, not failed)."""
        self._db.execute(f"UPDATE {self._table} SET status = 'pending' WHERE key = ? AND status = 'running'", (key,))

    # -- reading --------------------------------------------------------------------------
    def counts(self, run_id: int | None = None) -> dict[str, int]:
        """Tasks per status, for the whole ledger or the unfinished tasks run ``run_id`` planned.

        Finished tasks keep the run that finished them, so per run only the unfinished counts mean much.
        """
        where, args = ("WHERE plan = ?", (run_id,)) if run_id is not None else ("", ())
        counts = {PENDING: 0, RUNNING: 0, DONE: 0, FAILED: 0}
        for status, n in self._db.execute(f"SELECT status, COUNT(*) FROM {self._table} {where} GROUP BY status", args):
            counts[status] = n
        return counts

    def totals(self) -> dict[str, float]:
        """Summed attempts, rate-limit hits, connection errors, cost (wasted included), wasted and healed tasks."""
        row = self._db.execute(
            "SELECT TOTAL(attempts), TOTAL(rate_limit_hits), TOTAL(connection_errors), TOTAL(cost), "
            f"TOTAL(wasted), TOTAL(healed) FROM {self._table}"
        ).fetchone()
        names = ("attempts", "rate_limit_hits", "connection_errors", "cost", "wasted", "healed")
        return dict(zip(names, row))

    def keys(self, status: str) -> Iterator[str]:
        """Keys with ``status``, in plan order."""
        for (key,) in self._db.execute(f"SELECT key FROM {self._table} WHERE status = ? ORDER BY seq", (status,)):
            yield key

    def failures(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            f"SELECT key, error_kind, error, attempts, finished_at FROM {self._table} WHERE status = 'failed' ORDER BY seq"
        )
        names = ("key", "error_kind", "error", "attempts", "failed_at")
        return [dict(zip(names, row)) for row in rows]

    def failure_kinds(self, run_id: int) -> list[tuple[str, int, str]]:
        """The failed tasks run ``run_id`` planned, per error kind: (kind, how many, the first one's
        message), most first."""
        found: dict[str, list] = {}
        rows = self._db.execute(
            f"SELECT error_kind, error FROM {self._table} WHERE plan = ? AND status = 'failed' ORDER BY seq", (run_id,)
        )
        for kind, error in rows:
            entry = found.setdefault(kind or "unknown", [0, error or ""])
            entry[0] += 1
        return sorted(((kind, count, first) for kind, (count, first) in found.items()), key=lambda item: -item[1])

    def flagged(self, flag: str) -> dict[str, int]:
        """The finished tasks whose provenance sets ``flag``, counted by their provenance's ``model``."""
        rows = self._db.execute(
            f"SELECT json_extract(provenance, '$.model'), COUNT(*) FROM {self._table} WHERE status = 'done' "
            "AND json_extract(provenance, ?) GROUP BY 1 ORDER BY 1", (f"$.{flag}",))
        return {str(model): count for model, count in rows}

    def last_finished_seq(self) -> int:
        (seq,) = self._db.execute(f"SELECT MAX(seq) FROM {self._table} WHERE status IN ('done', 'failed')").fetchone()
        return seq or 0

    def task(self, key: str) -> dict[str, Any] | None:
        """Everything recorded about one task, or None."""
        return next(self._records("WHERE key = ?", (key,)), None)

    def records(self) -> Iterator[dict[str, Any]]:
        """Everything recorded about every task, in plan order (what views and exports read)."""
        return self._records("ORDER BY seq", ())

    def _records(self, clause: str, args: tuple) -> Iterator[dict[str, Any]]:
        cursor = self._db.execute(f"SELECT * FROM {self._table} {clause}", args)
        names = [column[0] for column in cursor.description]
        for row in cursor:
            record = dict(zip(names, row))
            for field in ("payload", "outputs", "provenance"):
                if record[field] is not None:
                    record[field] = json.loads(record[field])
            yield record
