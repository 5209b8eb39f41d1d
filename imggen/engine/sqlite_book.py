"""One SQLite file of an output folder, opened the way every book of the engine opens it.

Autocommit (each book takes ``BEGIN IMMEDIATE`` where several statements must land together), one
connection usable from the thread that owns the book, a busy timeout so that a second process
waits for the file rather than failing, and the book's schema created if missing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Sequence


class SqliteBook:
    """The connection, schema and context-manager plumbing that :class:`~.ledger.Ledger`,
    :class:`~.batch_book.BatchBook` and a pipeline's own tables share; each adds its tables' reads and writes."""

    def __init__(self, path: str | Path, schema: str, *, pragmas: Sequence[str] = ()) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in pragmas:
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(schema)

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
