"""The durable record of tasks sent to a provider's batch service, kept in the folder's ledger database.

A **submission** is a group of task keys sent as one remote batch. Its row and its lines are
committed before anything is uploaded, and each remote id (the input file's, then the batch's)
is committed as soon as the provider answers it, so a killed run leaves every paid request
findable: a rerun reads the open submissions here and polls them instead of sending their tasks
again. The folder's ``tag`` (made once) and the submission id are what the provider's copy is
labelled with, so a kill between the provider's answer and the write here is healed by looking
the id up at the provider. Each line keeps its outcome (done, failed, transient, returned).
Provider-neutral: it stores ids and statuses as text and knows nothing of any API.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .sqlite_book import SqliteBook

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_folder (tag TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batch_submissions (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    prepared_at REAL NOT NULL,
    lines INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    est_cost REAL NOT NULL,
    input_file_id TEXT,
    batch_id TEXT,
    status TEXT,
    counts TEXT,
    collected_at REAL
);
CREATE TABLE IF NOT EXISTS batch_lines (
    submission TEXT NOT NULL,
    key TEXT NOT NULL,
    outcome TEXT,
    PRIMARY KEY (submission, key)
);
CREATE INDEX IF NOT EXISTS batch_lines_by_key ON batch_lines (key);
"""
TRANSIENT = "transient"


@dataclass(frozen=True)
class Submission:
    """One group of tasks sent (or about to be sent) as a remote batch."""

    id: str
    prepared_at: float
    lines: int
    est_cost: float
    input_file_id: str | None
    batch_id: str | None
    status: str | None  # the provider's last reported status
    counts: dict[str, Any] | None  # the provider's last reported request counts


class BatchBook(SqliteBook):
    """Submissions of one output folder, in the ledger file at ``path`` (its own connection)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _SCHEMA)

    def folder_tag(self) -> str:
        """This folder's label at the provider, made on first use and kept for good."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT tag FROM batch_folder").fetchone()
            if row is None:
                row = (uuid.uuid4().hex,)
                self._db.execute("INSERT INTO batch_folder (tag) VALUES (?)", row)
        return row[0]

    def prepare(self, keys: Iterable[str], *, size: int, est_cost: float) -> Submission:
        """Record a new submission of ``keys`` (``size`` bytes of requests) before it is sent."""
        keys = list(keys)
        submission = Submission(uuid.uuid4().hex, time.time(), len(keys), est_cost, None, None, None, None)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO batch_submissions (id, prepared_at, lines, bytes, est_cost) VALUES (?, ?, ?, ?, ?)",
                (submission.id, submission.prepared_at, len(keys), size, est_cost))
            self._db.executemany("INSERT INTO batch_lines (submission, key) VALUES (?, ?)",
                                 ((submission.id, key) for key in keys))
        return submission

    def set_input_file(self, submission_id: str, file_id: str) -> None:
        self._db.execute("UPDATE batch_submissions SET input_file_id = ? WHERE id = ?", (file_id, submission_id))

    def set_batch(self, submission_id: str, batch_id: str, status: str) -> None:
        self._db.execute("UPDATE batch_submissions SET batch_id = ?, status = ? WHERE id = ?",
                         (batch_id, status, submission_id))

    def set_status(self, submission_id: str, status: str, counts: dict[str, Any] | None) -> None:
        self._db.execute("UPDATE batch_submissions SET status = ?, counts = ? WHERE id = ?",
                         (status, json.dumps(counts) if counts is not None else None, submission_id))

    def set_outcome(self, submission_id: str, key: str, outcome: str) -> None:
        self._db.execute("UPDATE batch_lines SET outcome = ? WHERE submission = ? AND key = ?",
                         (outcome, submission_id, key))

    def close_submission(self, submission_id: str) -> None:
        """Every line of the submission has its outcome in the ledger: it is no longer open."""
        self._db.execute("UPDATE batch_submissions SET collected_at = ? WHERE id = ?", (time.time(), submission_id))

    # -- reading ----------------------------------------------------------------------------
    def open_submissions(self) -> list[Submission]:
        """Submissions not yet collected, oldest first."""
        rows = self._db.execute(
            "SELECT id, prepared_at, lines, est_cost, input_file_id, batch_id, status, counts "
            "FROM batch_submissions WHERE collected_at IS NULL ORDER BY seq").fetchall()
        return [Submission(*row[:7], json.loads(row[7]) if row[7] else None) for row in rows]

    def keys_of(self, submission_id: str) -> list[str]:
        rows = self._db.execute("SELECT key FROM batch_lines WHERE submission = ? ORDER BY rowid", (submission_id,))
        return [key for (key,) in rows]

    def open_keys(self) -> set[str]:
        """Keys in submissions not yet collected: they are at the provider and must not be sent again."""
        rows = self._db.execute(
            "SELECT key FROM batch_lines JOIN batch_submissions ON batch_lines.submission = batch_submissions.id "
            "WHERE batch_submissions.collected_at IS NULL")
        return {key for (key,) in rows}

