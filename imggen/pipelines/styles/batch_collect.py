"""Batch mode's collection: a finished batch's result lines become images, or errors for the runner.

An output line (HTTP 200) is decoded and stored through the synchronous mode's own path
(:func:`~imggen.pipelines.styles.work.store_picture`), so layout, ``metadata.jsonl`` and PNG
provenance are the same; its cost is the synchronous price times the batch multiplier. Each line's
end goes to ``ended`` as the outcome or the error its task's attempt ends with, and the runner
records it as for any attempt: an error line is sorted into the engine's error kinds (a permanent
refusal fails the task; a transient one, a 5xx or a rate limit, is retried in a later batch by
the runner's retry rule); a request the batch never ran (``batch_expired``, ``batch_cancelled``,
or no line at all, as after an expiry, a cancel or a failed batch) ends :class:`Withdrawn`, to be
sent again. The image file is written before the runner marks the task done, so a kill during
collection leaves the image on disk, healed at what its PNG says it was billed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from openai.types import Batch, ImagesResponse

from imggen.backends.openai_batch import OpenAIBatchAPI, ResultLine
from imggen.backends.openai_images import OpenAIImageBackend
from imggen.backends.openai_models import ImageModelSpec, batch_terms
from imggen.engine.batch_book import TRANSIENT, BatchBook, Submission
from imggen.engine.errors import ErrorKind, TaskError, Withdrawn
from imggen.engine.ledger import DONE, FAILED, Ledger
from imggen.engine.tasks import Outcome, Task

from .drawers import openai_picture
from .work import store_picture

LineEnded = Callable[[str, "Outcome | Exception"], None]  # (key, the outcome or error its attempt ends with)


@dataclass
class Collector:
    """Turns finished batches of one output folder into files and ledger records."""

    root: Path
    ledger: Ledger
    book: BatchBook
    api: OpenAIBatchAPI
    images: OpenAIImageBackend
    spec: ImageModelSpec
    params: dict  # the request parameters the lines were sent with (model, size, quality, ...)
    ended: LineEnded  # told how every line of a collected batch ended
    secret: str | None = None

    async def collect(self, submission: Submission, batch: Batch) -> None:
        """Record every line of a finished ``batch``, then close its submission."""
        keys = set(self.book.keys_of(submission.id))
        lines = [*await self.api.result_lines(batch.output_file_id), *await self.api.result_lines(batch.error_file_id)]
        seen: set[str] = set()
        for line in lines:
            if line.custom_id in keys and line.custom_id not in seen:
                seen.add(line.custom_id)
                await self._record(submission, line)
        reason = _batch_failure(batch)
        for key in sorted(keys - seen):  # the batch never ran these requests
            if reason is None:
                self._return(submission, key)
            else:
                self.book.set_outcome(submission.id, key, TRANSIENT)
                self.ended(key, TaskError(ErrorKind.TRANSIENT, reason))
        self.book.close_submission(submission.id)

    async def _record(self, submission: Submission, line: ResultLine) -> None:
        key = line.custom_id
        record = self.ledger.task(key)
        if record is None or record["status"] in (DONE, FAILED):
            return  # recorded by an earlier collection of this batch
        task = Task(key, record["payload"], tuple(record["outputs"]), record["est_cost"])
        error = line.failure(self.secret) if not line.ok else None
        if line.ok:
            try:
                response = ImagesResponse.model_validate(line.body)
                image = await self.images.image_from_response(response, self.spec, self.params)
            except TaskError as exc:
                exc.billed *= batch_terms().price_multiplier  # billed at the batch price
                error = exc
            except ValueError:
                error = TaskError(ErrorKind.TRANSIENT, "a batch output line is not an Images API answer")
            else:
                outcome = store_picture(self.root, task, openai_picture(
                    image, price_multiplier=batch_terms().price_multiplier))
                self.book.set_outcome(submission.id, key, "done")
                self.ended(key, outcome)
                return
        if error is None:
            self._return(submission, key)
        elif error.kind in (ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED):  # a later batch, not a hold
            self.book.set_outcome(submission.id, key, TRANSIENT)
            self.ended(key, TaskError(ErrorKind.TRANSIENT, error.message, billed=error.billed))
        else:
            self.book.set_outcome(submission.id, key, "failed")
            self.ended(key, error)

    def _return(self, submission: Submission, key: str) -> None:
        self.book.set_outcome(submission.id, key, "returned")
        self.ended(key, Withdrawn(f"batch {submission.id[:8]} did not run {key}"))


def _batch_failure(batch: Batch) -> str | None:
    """Why a ``failed`` batch ran none of its requests (its first error), or None for other batches."""
    if batch.status != "failed":
        return None
    first = batch.errors.data[0] if batch.errors and batch.errors.data else None
    detail = f" ({first.code}: {first.message})" if first else ""
    return f"OpenAI batch {batch.id} failed{detail}"
