"""Batch mode of the style matrix: pending images go to OpenAI's Batch API, are polled, then collected.

The order makes a kill at any moment safe. A submission (its id and task keys) is committed to
the folder's ledger before its file is uploaded; the input file is uploaded under a name holding
the submission id and its id committed as soon as it is answered; the batch is created with
metadata naming the folder and the submission, and its id committed as soon as it is answered.
Before anything new is sent, every open submission that lacks an id is completed: its batch is
found again through ``batches.list`` (by the submission in its metadata), else its file through
``files.list`` (by its name), and only what does not exist is created, so no task is ever
submitted twice. Tasks of open submissions are never put in a new one.

Run control: pause stops polling and submitting; stop leaves the batches running at OpenAI and
exits (a rerun resumes them); ``cancel_batches`` cancels this folder's open batches, collects what
they finished and submits nothing new. The budget caps the batch price of what this run submits.
Sending is in :mod:`~imggen.pipelines.styles.batch_send`, collection in
:mod:`~imggen.pipelines.styles.batch_collect`, request files in
:mod:`~imggen.pipelines.styles.batch_requests`, the progress line in
:mod:`~imggen.pipelines.styles.batch_progress`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from openai.types import Batch

from imggen.backends.openai_batch import FINISHED_STATUSES, OpenAIBatchAPI
from imggen.backends.openai_images import OpenAIImageBackend, request_params
from imggen.engine.batch_book import BatchBook, Submission
from imggen.engine.control import ControlState, RunControl, SignalHandlers
from imggen.engine.errors import ErrorKind, TaskError
from imggen.engine.events import Reporter
from imggen.engine.job import JobFiles, job_views
from imggen.engine.ledger import Ledger
from imggen.engine.reporters import LogReporter
from imggen.engine.run_record import RunRecord
from imggen.engine.runner import RunSummary
from imggen.engine.tasks import Task
from imggen.storage.lock import folder_lock

from .batch_collect import Collector
from .layout import made_for
from .batch_progress import BatchWatch
from .batch_requests import group_requests
from .batch_send import Sender

if TYPE_CHECKING:
    from .plan import StylePlan


class BatchRun:
    """One batch-mode run over an output folder whose ledger, book and lock are held by the caller."""

    def __init__(self, plan: "StylePlan", ledger: Ledger, book: BatchBook, api: OpenAIBatchAPI,
                 images: OpenAIImageBackend, *, control: RunControl, record: RunRecord, secret: str | None) -> None:
        self.plan, self.request = plan, plan.request
        self.ledger, self.book, self.api = ledger, book, api
        self.control, self.record = control, record
        params = plan.image_params
        self.collector = Collector(ledger.root, ledger, book, api, images, plan.spec,
                                   request_params(plan.spec.id, params["size"], params["quality"], params["extra"]),
                                   finish=record.finished, retry=self._retrying, secret=secret)
        self.watch = BatchWatch()
        self.committed = 0.0  # batch price of what this run submitted
        self._last_said: str | None = None

    async def run(self) -> RunSummary:
        record = self.record
        self.run_id = record.begin(self.plan.tasks, retry_failed=self.request.retry_failed,
                                   running=len(self.book.open_keys()))
        self.sender = Sender(self.plan, self.ledger, self.book, self.api, self.book.folder_tag(), say=self._say,
                             failed=lambda key, message: record.finished(key, "failed", error_kind="permanent",
                                                                         message=message))
        loop = asyncio.get_running_loop()
        body = loop.create_task(self._work())
        self.control.bind(loop, on_immediate_stop=body.cancel, on_change=lambda state: record.changed(state.value))
        try:
            await body
        except asyncio.CancelledError:
            if not self.control.immediate:
                raise
        except TaskError as exc:  # fatal: a bad key, an exhausted quota, a batch the API no longer knows
            record.stop("fatal", exc.message)
        finally:
            self.control.unbind()
            summary = record.end("stopped" if self.control.state is ControlState.STOPPING else "finished",
                                 self._left_running())
        return summary

    async def _work(self) -> None:
        cancelled = False
        while await self.control.proceed():  # paused: waits here; stopping: leaves the batches running
            await self.sender.complete_open(create=not self.request.cancel_batches)
            if self.request.cancel_batches and not cancelled:
                await self._cancel_open()
                cancelled = True
            if self._may_submit():
                await self._submit()
            await self._poll()
            open_submissions = self.book.open_submissions()
            self.record.progress = self.record.progress.evolve(running=len(self.book.open_keys()))
            if not open_submissions and not (self._may_submit() and any(self._unsent())):
                return
            self._say(self.watch.describe(open_submissions, time.time()), quiet=True)
            await self._nap()

    # -- submitting ---------------------------------------------------------------------------
    def _may_submit(self) -> bool:
        return self.record.end_state is None and not self.request.cancel_batches

    def _unsent(self) -> Iterator[Task]:
        """Pending tasks in no open submission; tasks whose image is already on disk are marked healed."""
        open_keys = self.book.open_keys()
        for row in self.ledger.pending(self.run_id):
            task = row.task
            if task.key in open_keys:
                continue
            if task.outputs and made_for(self.ledger.root, task):
                self.record.healed(task)  # booked at what its file says it was billed
                continue
            yield task

    async def _submit(self) -> None:
        budget = self.request.budget
        room = None if budget is None else budget - self.committed
        for group in group_requests(self.plan, self._unsent(), room=room):
            if self.control.state is not ControlState.RUNNING:
                return
            submission = self.book.prepare([task.key for task in group.tasks], size=len(group.data),
                                           est_cost=group.est_cost)
            for task in group.tasks:
                self.ledger.mark_started(task.key)
            self.committed += group.est_cost
            if not await self.sender.send(submission, bytes(group.data)):
                return  # OpenAI is not answering: the next poll looks this one up before sending more
        if budget is not None and any(self._unsent()):
            self.record.stop("budget", f"budget reached: submitted ${self.committed:.2f} of ${budget:.2f} in this run "
                                 f"(at the batch price; per image: {self.plan.estimate_basis}); a budget counts "
                                 "this run only: rerun to continue")

    # -- polling ------------------------------------------------------------------------------
    async def _poll(self) -> None:
        for submission in self.book.open_submissions():
            if submission.batch_id is None or self.control.state is ControlState.PAUSED:
                continue
            try:
                batch = await self.api.retrieve(submission.batch_id)
            except TaskError as exc:
                if exc.kind is ErrorKind.PERMANENT:
                    raise TaskError(ErrorKind.FATAL, f"OpenAI batch {submission.batch_id}: {exc.message}") from None
                if exc.kind is ErrorKind.FATAL:
                    raise
                self._say(f"polling batch {submission.batch_id} failed ({exc.message}); trying again")
                continue
            self._record_status(submission, batch)
            if batch.status in FINISHED_STATUSES:
                try:
                    await self.collector.collect(submission, batch)
                except TaskError as exc:
                    if exc.kind is ErrorKind.FATAL:
                        raise
                    self._say(f"collecting batch {batch.id} failed ({exc.message}); trying again")
                    continue
                self.watch.collected(submission)
                self.record.write_views(force=True)

    def _record_status(self, submission: Submission, batch: Batch) -> None:
        counts = batch.request_counts.model_dump() if batch.request_counts else None
        self.book.set_status(submission.id, batch.status, counts)
        self.watch.saw(submission.id, batch)

    async def _cancel_open(self) -> None:
        for submission in self.book.open_submissions():
            if submission.batch_id is None:
                continue
            try:
                batch = await self.api.cancel(submission.batch_id)
            except TaskError as exc:  # e.g. 409: a batch that already finished cannot be cancelled
                if exc.kind is ErrorKind.FATAL:
                    raise
                continue
            self._record_status(submission, batch)
            self._say(f"cancelling batch {batch.id}")

    async def _nap(self) -> None:
        """Wait ``poll_s`` seconds, or less when the run stops meanwhile (a pause holds at the next turn)."""
        await self.control.sleep(self.request.poll_s)

    # -- bookkeeping --------------------------------------------------------------------------
    def _retrying(self, key: str, kind: str, message: str) -> None:
        self.record.retrying(key, kind, message, 0.0)

    def _left_running(self) -> str | None:
        left = [s.batch_id for s in self.book.open_submissions() if s.batch_id]
        if not left:
            return None
        return (f"{len(left)} batch(es) still running at OpenAI ({', '.join(left[:3])}{', ...' if len(left) > 3 else ''}"
                "); rerun the same command to collect them, or add --cancel-batches to cancel them")

    def _say(self, message: str, *, quiet: bool = False) -> None:
        """Report a line; with ``quiet``, only when it differs from the last one."""
        if quiet and message == self._last_said:
            return
        self._last_said = message
        self.record.say(message)


async def run_styles_batch(plan: "StylePlan", *, api_key: str, files: JobFiles, base_url: str | None = None,
                           control: RunControl | None = None, reporters: Sequence[Reporter] = (),
                           handle_signals: bool = False,
                           paid_for: Callable[[Task], float] = lambda task: 0.0) -> RunSummary:
    """Run a planned style matrix through the Batch API in ``files.root``; see the module's notes."""
    control = control or RunControl()
    timeout_s = plan.request.request_timeout_s  # a Files or Batches call that does not answer in time is tried again
    api = OpenAIBatchAPI(api_key=api_key, base_url=base_url, timeout_s=timeout_s)
    images = OpenAIImageBackend(api_key=api_key, base_url=base_url, allow_retired=plan.request.allow_retired,
                                timeout_s=timeout_s)
    try:
        with folder_lock(files.root), Ledger(files.root) as ledger, BatchBook(ledger.path) as book:
            ledger.record_rounds(plan.rounds)  # before any task of the round is planned, as run_job does
            record = RunRecord(ledger, reporters=[LogReporter(files.log), *reporters], views=job_views(files),
                               paid_for=paid_for)
            run = BatchRun(plan, ledger, book, api, images, control=control, record=record, secret=api_key)
            loop = asyncio.get_running_loop()
            with SignalHandlers(control, loop, record.say) if handle_signals else contextlib.nullcontext():
                return await run.run()
    finally:
        await api.aclose()
        await images.aclose()
