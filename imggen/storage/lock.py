"""One run per output folder at a time: two runs on one folder would pay for the same images twice."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".imggen.lock"


class FolderBusy(RuntimeError):
    """Another process is running a job in this folder."""


@contextlib.contextmanager
def folder_lock(root: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on ``root`` for the duration of a run; leftover temporary files are removed."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise FolderBusy(f"{root} is in use by a running job ({owner}); wait for it or stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        _remove_partial_files(root)
        try:
            yield root
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_partial_files(root: Path) -> None:
    """Temporary files of writes a killed run never finished (see :mod:`imggen.storage.atomic`)."""
    for partial in root.rglob(".*.part"):
        partial.unlink(missing_ok=True)
