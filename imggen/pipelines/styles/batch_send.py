"""Batch mode's sending: a submission's request file is uploaded and its batch created, each id kept at once.

:class:`Sender` uploads the input file (named after the submission) and creates the batch (its
metadata naming the folder and the submission), committing the file id and then the batch id to
the ledger the moment OpenAI answers them. :meth:`Sender.complete_open` finishes what a killed or
failed run left half sent: a submission without a batch id has its batch looked up through
``batches.list`` first, then its file through ``files.list``, and only what does not exist is
made. A call that failed for a passing reason may still have reached OpenAI, so it is never
simply repeated: the next poll looks it up first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable, TypeVar

from imggen.backends.openai_batch import OpenAIBatchAPI, request_line
from imggen.engine.batch_book import BatchBook, Submission
from imggen.engine.errors import ErrorKind, NotThisRun, TaskError
from imggen.engine.ledger import Ledger

from .batch_requests import request_body

if TYPE_CHECKING:
    from .plan import StylePlan

FOLDER_KEY, SUBMISSION_KEY = "imggen_folder", "imggen_submission"  # the batch metadata that finds it again
LOOKBACK_SLACK_S = 600.0  # clock difference allowed when looking a batch up by its creation time
T = TypeVar("T")


def input_file_name(submission_id: str) -> str:
    return f"imggen-{submission_id}.jsonl"


class LookupFailed(Exception):
    """Looking up an open batch failed for a passing reason; it is tried again at the next poll."""


@dataclass
class Sender:
    """Sends the submissions of one output folder."""

    plan: "StylePlan"
    ledger: Ledger
    book: BatchBook
    api: OpenAIBatchAPI
    tag: str  # the folder's label in the batch metadata
    say: Callable[[str], None]
    ended: Callable[[str, Exception], None]  # (key, error): a task that this submission will not draw

    async def send(self, submission: Submission, data: bytes | None = None) -> bool:
        """Upload (unless already uploaded) and create the batch, committing each id as it is answered.
        False when a call failed for a passing reason (the submission stays open, to be looked up)."""
        try:
            file_id = submission.input_file_id
            if file_id is None:
                file_id = await self.api.upload(input_file_name(submission.id), data or self.rebuild(submission))
                self.book.set_input_file(submission.id, file_id)
            batch = await self.api.create(file_id, {FOLDER_KEY: self.tag, SUBMISSION_KEY: submission.id})
            self.book.set_batch(submission.id, batch.id, batch.status)
        except TaskError as exc:
            if exc.kind is ErrorKind.FATAL:
                raise
            if exc.kind is not ErrorKind.PERMANENT:
                self.say(f"sending batch {submission.id[:8]} failed ({exc.message}); looked up at the next poll")
                return False
            self.book.close_submission(submission.id)
            for key in self.book.keys_of(submission.id):  # refused outright: nothing was created
                self.ended(key, exc)
        return True

    def rebuild(self, submission: Submission) -> bytes:
        """The request file of a submission whose upload never happened, from the ledger."""
        lines = []
        for key in self.book.keys_of(submission.id):
            record = self.ledger.task(key)
            lines.append(request_line(key, request_body(self.plan, record["payload"]["prompt"])))
        return b"".join(lines)

    async def complete_open(self, *, create: bool = True) -> None:
        """Give every open submission without a batch id its batch: found again, or (with ``create``)
        created now; without ``create`` a submission never sent is dropped and its tasks stay pending."""
        try:
            for submission in self.book.open_submissions():
                if submission.batch_id is None:
                    await self._complete(submission, create=create)
        except LookupFailed:
            return

    async def _complete(self, submission: Submission, *, create: bool) -> None:
        batch = await self._lookup(self.api.find_batch(
            SUBMISSION_KEY, submission.id, created_after=submission.prepared_at - LOOKBACK_SLACK_S))
        if batch is not None:
            self.book.set_batch(submission.id, batch.id, batch.status)
            if submission.input_file_id is None:
                self.book.set_input_file(submission.id, batch.input_file_id)
            return
        file_id = submission.input_file_id or await self._lookup(self.api.find_file(input_file_name(submission.id)))
        if file_id is not None and submission.input_file_id is None:
            self.book.set_input_file(submission.id, file_id)
        if not create:
            self.book.close_submission(submission.id)
            for key in self.book.keys_of(submission.id):
                self.ended(key, NotThisRun(f"{key} was never sent, and --cancel-batches sends nothing new"))
            return
        await self.send(dataclasses.replace(submission, input_file_id=file_id))

    async def _lookup(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except TaskError as exc:
            if exc.kind is ErrorKind.FATAL:
                raise
            self.say(f"looking up open batches failed ({exc.message}); trying again at the next poll")
            raise LookupFailed() from None
