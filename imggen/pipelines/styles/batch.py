"""Batch mode of the style matrix: the engine's runner, each task drawn as a line of an OpenAI batch.

The runner runs batch mode as it runs every other kind of run (planning, healing at the booked
price, the budget at the batch price, Pause and Stop, the retry rule, the summary with its failure
kinds); its work, :class:`BatchWork`, makes each task wait for its line of a remote batch. Tasks
handed over together are grouped into request files (:mod:`.batch_requests`), sent
(:mod:`.batch_send`), polled every ``poll_s`` seconds and collected (:mod:`.batch_collect`); how
a line ended is how its task's attempt ends. The batches' progress line is :mod:`.batch_progress`'s.

The order makes a kill at any moment safe. A submission (its id and task keys) is committed to
the folder's ledger before its file is uploaded; the input file is uploaded under a name holding
the submission id and its id committed as soon as it is answered; the batch is created with
metadata naming the folder and the submission, and its id committed as soon as it is answered.
Before anything new is sent, every open submission that lacks an id is completed: its batch is
found again through ``batches.list`` (by the submission in its metadata), else its file through
``files.list`` (by its name), and only what does not exist is created, so no task is ever
submitted twice. A task of an open submission waits for its line; it is never put in a new one.

Run control: Pause stops polling and sending, and gives the waiting tasks back to the runner, which
holds them (after Resume they wait for the same lines); Stop leaves the batches running at OpenAI
and ends, the summary saying so (a rerun collects them); ``cancel_batches`` cancels this folder's
open batches, collects what they finished and sends nothing new (the other tasks stay pending).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from openai.types import Batch

from imggen.backends.openai_batch import FINISHED_STATUSES, OpenAIBatchAPI
from imggen.backends.openai_images import OpenAIImageBackend, request_params
from imggen.engine.announcer import Announcer
from imggen.engine.batch_book import BatchBook, Submission
from imggen.engine.control import ControlState, RunControl
from imggen.engine.errors import ErrorKind, NotThisRun, TaskError, Withdrawn
from imggen.engine.events import Reporter
from imggen.engine.job import JobFiles, run_job
from imggen.engine.runner import RunnerConfig, RunSummary
from imggen.engine.this_run import this_runs_ledger
from imggen.engine.tasks import Outcome, Task

from .batch_collect import Collector
from .batch_progress import BatchWatch
from .batch_requests import batch_price, group_requests
from .batch_send import Sender
from .layout import made_for

if TYPE_CHECKING:
    from .plan import StylePlan

log = logging.getLogger("imggen.styles")
SETTLE_S = 0.2  # tasks handed over within this of each other share request files


class BatchWork:
    """The runner's work in batch mode for one output folder (opened by the run's first task)."""

    def __init__(self, plan: "StylePlan", root: Path, api: OpenAIBatchAPI, images: OpenAIImageBackend, *,
                 control: RunControl, say: Callable[[str], None], secret: str | None) -> None:
        self.plan, self.request, self.root = plan, plan.request, Path(root)
        self.api, self.images, self.control, self.secret = api, images, control, secret
        self._say_line, self._last_said = say, None
        self.watch = BatchWatch()
        self.book: BatchBook | None = None
        self._waiting: dict[str, asyncio.Future] = {}  # task key → the end of its line
        self._unsent: list[Task] = []  # handed over, in no submission yet
        self._at_provider: set[str] = set()  # keys in open submissions whose lines have not ended
        self._unclaimed: dict[str, Outcome | TaskError] = {}  # lines that ended while their task was given back
        self._loop: asyncio.Task | None = None
        self._fatal: TaskError | None = None
        self._cancelled = False

    # -- what the runner calls ------------------------------------------------------------------
    async def __call__(self, task: Task) -> Outcome:
        self._open()
        if self._fatal is not None:
            raise self._fatal
        if task.key in self._unclaimed:
            ended = self._unclaimed.pop(task.key)
            if isinstance(ended, Exception):
                raise ended
            return ended
        if task.key not in self._at_provider:
            if self.request.cancel_batches:
                raise NotThisRun(f"{task.key} is not in an open batch, and --cancel-batches sends nothing new")
            self._unsent.append(task)
        future = asyncio.get_running_loop().create_future()
        self._waiting[task.key] = future
        self._keep_looping()
        return await future

    def withdraw_waiting(self) -> None:
        """Pause and Stop: every waiting task is given back; what is at OpenAI stays, nothing more is sent."""
        self._unsent.clear()
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(Withdrawn("the run paused or stopped before its line came back"))

    def left_running(self) -> str | None:
        """The summary's word on batches left running at OpenAI, if any."""
        left = [s.batch_id for s in self.book.open_submissions() if s.batch_id] if self.book else []
        if not left:
            return None
        return (f"{len(left)} batch(es) still running at OpenAI ({', '.join(left[:3])}{', ...' if len(left) > 3 else ''}"
                "); rerun the same command to collect them, or add --cancel-batches to cancel them")

    async def aclose(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        if self.book is not None:
            self.book.close()

    # -- the folder ---------------------------------------------------------------------------
    def _open(self) -> None:
        if self.book is not None:
            return
        self.ledger = this_runs_ledger()
        self.book = BatchBook(self.ledger.path)
        params = self.plan.image_params
        self.sender = Sender(self.plan, self.ledger, self.book, self.api, self.book.folder_tag(), say=self._say,
                             ended=self._line_ended)
        self.collector = Collector(self.root, self.ledger, self.book, self.api, self.images, self.plan.spec,
                                   request_params(self.plan.spec.id, params["size"], params["quality"], params["extra"]),
                                   ended=self._line_ended, secret=self.secret)
        self._at_provider = self.book.open_keys()
        self._keep_looping()  # open batches are polled (or cancelled) even when no task waits for them

    def _line_ended(self, key: str, ended: Outcome | Exception) -> None:
        """A task's line came back (an outcome or an error), or will not come back from its submission."""
        self._at_provider.discard(key)
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_exception(ended) if isinstance(ended, Exception) else future.set_result(ended)
        elif isinstance(ended, (Outcome, TaskError)):
            self._unclaimed[key] = ended  # the runner asks for the task again after a resume

    # -- sending, polling and collecting ----------------------------------------------------------
    def _keep_looping(self) -> None:
        if (self._loop is None or self._loop.done()) and self._fatal is None:
            self._loop = asyncio.get_running_loop().create_task(self._run_batches())

    async def _run_batches(self) -> None:
        try:
            while await self.control.proceed():  # paused: waits here; stopping: leaves the batches running
                await self._settle()
                await self.sender.complete_open(create=not self.request.cancel_batches)
                if self.request.cancel_batches and not self._cancelled:
                    await self._cancel_open()
                    self._cancelled = True
                await self._submit()
                await self._poll()
                open_submissions = self.book.open_submissions()
                if not open_submissions and not self._unsent:
                    for key in list(self._waiting):  # no line is coming: sent again on the runner's next ask
                        self._line_ended(key, Withdrawn(f"{key} is in no open batch"))
                    return
                self._say(self.watch.describe(open_submissions, time.time()), quiet=True)
                await self.control.sleep(self.request.poll_s)
        except TaskError as exc:  # fatal: a bad key, an exhausted quota, a batch the API no longer knows
            self._end_all(exc)
        except Exception as exc:
            log.exception("batch mode failed")
            self._end_all(TaskError(ErrorKind.FATAL, f"batch mode failed: {exc!r}"))

    def _end_all(self, error: TaskError) -> None:
        self._fatal = error
        for key in list(self._waiting):
            self._line_ended(key, error)

    async def _settle(self) -> None:
        """Wait while tasks are still being handed over, so that they share request files."""
        seen = 0
        while self._unsent and len(self._unsent) != seen:
            seen = len(self._unsent)
            await self.control.sleep(SETTLE_S)

    async def _submit(self) -> None:
        while self._unsent and self.control.state is ControlState.RUNNING:
            group = next(group_requests(self.plan, self._unsent))
            del self._unsent[:len(group.tasks)]
            keys = [task.key for task in group.tasks]
            submission = self.book.prepare(keys, size=len(group.data), est_cost=group.est_cost)
            self._at_provider.update(keys)
            if not await self.sender.send(submission, bytes(group.data)):
                return  # OpenAI is not answering: the next turn looks this one up before sending more

    async def _poll(self) -> None:
        for submission in self.book.open_submissions():
            if submission.batch_id is None or self.control.state is not ControlState.RUNNING:
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

    def _say(self, message: str, *, quiet: bool = False) -> None:
        """Report a line; with ``quiet``, only when it differs from the last one."""
        if quiet and message == self._last_said:
            return
        self._last_said = message
        self._say_line(message)


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
    announcer = Announcer()
    work = BatchWork(plan, files.root, api, images, control=control, say=announcer.say, secret=api_key)
    tasks = [dataclasses.replace(task, cost=batch_price(task)) for task in plan.tasks]
    config = RunnerConfig(concurrency=max(len(tasks), 1), budget=plan.request.budget,
                          estimate_basis=f"{plan.estimate_basis}, at the batch price",
                          retry_failed=plan.request.retry_failed)
    try:
        return await run_job(files, tasks, work, config=config, control=control, reporters=reporters,
                             handle_signals=handle_signals, outputs_valid=lambda task: made_for(files.root, task),
                             paid_for=paid_for, rounds=plan.rounds, announcer=announcer)
    finally:
        await work.aclose()
        await api.aclose()
        await images.aclose()
