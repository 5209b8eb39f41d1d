"""Prediction ids of paid remote calls whose results are not saved yet, so a rerun collects them.

A Replicate prediction is billed once it is created. The id is written to
``predictions/<key>.json`` the moment the create call answers; if the process dies before the
output is on disk, the next run resumes that prediction instead of creating (and paying for) a
new one. The entry is forgotten once the result is saved.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from imggen.engine.errors import ErrorKind, TaskError
from imggen.storage.atomic import atomic_write_json
from imggen.storage.paths import safe_name

Result = TypeVar("Result")
OnCreated = Callable[[str], Awaitable[None]]


class PredictionJournal:
    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        return self.folder / f"{safe_name(key)}.json"

    def pending(self, key: str) -> dict | None:
        """The recorded ``{"model", "prediction_id"}`` for ``key``, if any."""
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    async def forget(self, key: str) -> None:
        """Drop ``key``'s record once its result is saved (off the event loop, like the writes)."""
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def collect_or_create(
        self,
        key: str,
        model: str,
        resume: Callable[[str, str], Awaitable[Result]],
        create: Callable[[OnCreated], Awaitable[Result]],
    ) -> Result:
        """Resume the prediction recorded for ``key``, or ``create`` one and record its id.

        A recorded prediction that ended without a usable output (failed, expired) is dropped and
        a new one created; when only reaching the server failed, the error goes to the runner and
        the record is kept for the next attempt.
        """
        entry = self.pending(key)
        if entry is not None:
            try:
                return await resume(entry["model"], entry["prediction_id"])
            except TaskError as error:
                if error.connection_error or error.kind in (ErrorKind.RATE_LIMITED, ErrorKind.FATAL):
                    raise
                await self.forget(key)

        async def record(prediction_id: str) -> None:  # off the event loop: other calls go on meanwhile
            entry = {"model": model, "prediction_id": prediction_id}
            await asyncio.to_thread(atomic_write_json, self._path(key), entry)

        return await create(record)
