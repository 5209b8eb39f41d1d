"""The async runner: plans tasks into the ledger, then runs the pending ones through a work function.

It owns the retry loop per error kind, the budget and run control; the run's account (planning, each
task's end, healing, stops, progress events, the summary) is its :class:`~.run_record.RunRecord`;
when the next attempt may start (tasks in flight, the one limiter, a rate-limit hold) is
:mod:`.pacing`'s. ``work`` is any ``async (Task) -> Outcome`` callable: a call per task, workers
around a local model, or a line of a provider's batch (whose ``left_running()`` the summary says).

Retry policy (decided by :mod:`.retry`, see :class:`~imggen.engine.errors.ErrorKind`):

* rate limited: every worker holds off until the server's wait has passed (without a readable
  wait, the limiter paces the retry from the server's count); the attempt budget is not spent
  (why the loop is written out here: only transient failures count, and the wait is shared).
* transient: exponential backoff with full jitter, at most ``max_attempts`` attempts in this run.
* permanent: recorded as failed, never retried (a rerun skips it unless ``retry_failed``).
* fatal: the run stops cleanly; the task goes back to pending; the message says what to do.

The budget (:mod:`.budget`): a task starts only if its estimate fits beside what was spent and
what the tasks in flight hold; a job whose tasks cannot estimate their cost reserves each paid call
from the same budget, and a task stopped there ends the run as a budget stop the same way.

A task may need another piece of work first (a training image, its grid): it asks the runner for a
sub-task (:func:`~.this_run.run_subtask`), which runs by the same rules and is recorded in the
ledger the caller names, without counting in the run's progress.

Pause and Stop hold within what is being drawn: work that keeps tasks waiting (a local model's
queue, a batch's lines) has a ``withdraw_waiting()`` the runner calls; each task given back raises
:class:`~.errors.Withdrawn` (held while paused, pending again after a stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from ..settings import redact, secret_values
from ..storage.atomic import is_valid_image
from .budget import Budget
from .concurrency import InFlightTarget
from .config import RunnerConfig, RunSummary
from .control import ControlState, RunControl, SignalHandlers
from .errors import BudgetReached, ErrorKind, NotThisRun, TaskError, Withdrawn, is_file_error
from .events import Reporter
from .ledger import Ledger, LedgerRow
from .pacing import Pacing, RateLimit
from .retry import Decision, decide
from .run_record import RunRecord, View
from .tasks import Outcome, Task, Work
from .this_run import CURRENT_RUN, ThisRun

log = logging.getLogger("imggen.engine")


@dataclass(frozen=True)
class Ended:
    """How a task's attempts ended: done, failed, healed, released (pending again), budget or fatal."""

    status: str
    outcome: Outcome | None = None
    kind: ErrorKind | None = None
    message: str | None = None
    error: BaseException | None = None


# RunnerConfig, RunSummary (from .config) and RateLimit (from .pacing) are named here too, beside the Runner.
__all__ = ["RateLimit", "Runner", "RunnerConfig", "RunSummary", "View", "Work"]


class Runner:
    """Run tasks through ``work`` with everything the engine promises. One ``run`` at a time."""

    def __init__(
        self,
        ledger: Ledger,
        work: Work,
        *,
        config: RunnerConfig = RunnerConfig(),
        control: RunControl | None = None,
        reporters: Sequence[Reporter] = (),
        views: Sequence[View] = (),
        outputs_valid: Callable[[Task], bool] | None = None,  # may a task's files on disk stand for its result?
        paid_for: Callable[[Task], float] | None = None,  # what such files were billed (a killed run paid them)
        budget: Budget | None = None,  # the run's budget, if its paid calls reserve from it too
    ) -> None:
        self.ledger = ledger
        self.work = work
        self.config = config
        self.control = control or RunControl()
        self.reporters = list(reporters)
        self.views = list(views)
        self.outputs_valid = outputs_valid or self._outputs_are_images
        self.paid_for = paid_for or (lambda task: 0.0)
        self.budget = budget or Budget(config.budget, estimate_basis=config.estimate_basis)
        self._secrets = secret_values()

    # -- public -------------------------------------------------------------------------------
    async def run(self, tasks: Iterable[Task], *, handle_signals: bool = False) -> RunSummary:
        """Plan ``tasks`` and run the unfinished ones. With ``handle_signals``, Ctrl-C stops the run."""
        loop = asyncio.get_running_loop()
        self._in_flight: set[asyncio.Task] = set()
        target = InFlightTarget(self.config.concurrency, ceiling=self.config.max_concurrency)
        self._pacing = Pacing(self.config.limiter(), target, self.control, window_s=self.config.limit_window_s,
                              tokens_per_min=self.config.tokens_per_min, tokens_each=self.config.tokens_each)
        self._record = RunRecord(self.ledger, reporters=self.reporters, views=self.views,
                                 view_interval_s=self.config.view_interval_s, paid_for=self.paid_for)
        token = CURRENT_RUN.set(ThisRun(self.ledger, self.subtask))  # for the run's tasks (run_subtask)
        try:
            with SignalHandlers(self.control, loop, self._record.say) if handle_signals else contextlib.nullcontext():
                return await self._plan_and_run(loop, tasks)
        finally:
            CURRENT_RUN.reset(token)

    async def _plan_and_run(self, loop: asyncio.AbstractEventLoop, tasks: Iterable[Task]) -> RunSummary:
        record = self._record
        run_id = record.begin(tasks, retry_failed=self.config.retry_failed)
        self.control.bind(loop, on_immediate_stop=self._cancel_in_flight, on_change=self._on_control)
        source = self.ledger.pending(run_id)
        try:
            left = record.progress.total - record.progress.done
            workers = [loop.create_task(self._worker(source))
                       for _ in range(max(min(self._pacing.target.ceiling, left), 1))]
            results = await asyncio.gather(*workers, return_exceptions=True)
            for result in results:  # workers cancelled by an immediate stop end with CancelledError
                if isinstance(result, Exception):
                    raise result
        finally:
            self.control.unbind()
            left_running = getattr(self.work, "left_running", lambda: None)()  # batches still at a provider
            summary = record.end("stopped" if self.control.state is ControlState.STOPPING else "finished", left_running)
        return summary

    # -- workers ---------------------------------------------------------------------------
    async def _worker(self, source: Iterator[LedgerRow]) -> None:
        # The next task is taken before a pause is waited out: a run paused with nothing left to
        # start ends when its last task does, instead of sitting "paused: 20/20 done".
        while self._record.end_state is None and (row := next(source, None)) is not None:
            if not await self.control.proceed():
                return  # the row is still pending in the ledger
            await self._pacing.gate.acquire()
            try:
                if not await self._take(row.task):
                    return
            finally:
                self._pacing.gate.release()

    async def _take(self, task: Task) -> bool:
        """Run ``task`` (or count it healed); False when the budget is spent."""
        if task.outputs and self.outputs_valid(task):
            self._record.healed(task)
            return True
        try:
            if not await self.budget.hold(task.cost, lambda: self._record.progress.spent, self._still_running):
                return False
        except BudgetReached as reached:
            self._record.stop("budget", reached.message)
            return False
        job = asyncio.current_task()
        self._in_flight.add(job)
        try:
            await self._run_task(task)
        finally:
            self._in_flight.discard(job)
            self.budget.release(task.cost)
        return True

    def _still_running(self) -> bool:
        return self._record.end_state is None and self.control.state is not ControlState.STOPPING

    async def _run_task(self, task: Task) -> None:
        ended = await self._attempts(task, self.work, self.ledger, counted=True)
        if ended.status in ("done", "failed"):
            outcome = ended.outcome
            self._record.finished(task.key, ended.status, cost=outcome.cost if outcome else 0.0,
                                  outputs=tuple(outcome.outputs) if outcome else (),
                                  error_kind=ended.kind.value if ended.kind else None, message=ended.message)
        elif ended.status in ("budget", "fatal"):
            self._record.stop(ended.status, ended.message)
        elif ended.status == "healed":
            self._record.healed(task)  # drawn after all while paused (a Ray actor cannot skip it)

    async def subtask(self, task: Task, work: Work, ledger: Ledger) -> Outcome:
        """Run ``task`` (already planned in ``ledger``) for a task in flight, by the same rules as the
        run's own: paced, retried, budgeted and controlled, its attempts and end recorded in ``ledger``;
        it is not counted in the run's progress. Its outcome, or the error that ended it: a
        :class:`TaskError` of its final kind, :class:`BudgetReached`, or :class:`Withdrawn` when the
        run stopped first (the task is pending again)."""
        ended = await self._attempts(task, work, ledger, counted=False)
        if ended.status == "done":
            return ended.outcome
        if ended.status == "released":
            raise Withdrawn(f"the run is stopping: {task.key} was not sent")
        if isinstance(ended.error, (BudgetReached, TaskError)):
            raise ended.error
        raise TaskError(ended.kind, ended.message)

    async def _attempts(self, task: Task, work: Work, ledger: Ledger, *, counted: bool) -> Ended:
        """Attempt ``task`` until it is done, fails for good or the run ends, recording each attempt
        in ``ledger``. ``counted``: one of the run's own tasks (its running count and pace follow it)."""
        transient_failures, withdrawn = 0, False
        while True:
            if not await self._pacing.wait_turn(lambda: self._record.end_state is None):
                ledger.release(task.key)
                return Ended("released")
            if counted and withdrawn and task.outputs and self.outputs_valid(task):
                return Ended("healed")
            ledger.mark_started(task.key)
            if counted:
                self._set_running(+1)
            began = time.monotonic()
            try:
                outcome, error = await work(task), None
            except asyncio.CancelledError:
                ledger.release(task.key)
                raise
            except NotThisRun:
                ledger.release(task.key)
                return Ended("released")
            except Withdrawn:
                withdrawn = True  # not drawn: wait_turn holds it while paused and gives it back on a stop
                continue
            except Exception as exc:
                outcome, error = None, exc
            finally:
                if counted:
                    self._set_running(-1)

            if outcome is not None:
                ledger.mark_done(task.key, outcome)
                if outcome.rate is not None:
                    self._pacing.follow_server(outcome.rate)
                if counted:
                    self._pacing.answered(time.monotonic() - began)
                return Ended("done", outcome)
            if isinstance(error, BudgetReached):  # a paid call the budget cannot cover was not sent
                ledger.release(task.key)
                return Ended("budget", message=error.message, error=error)
            decision = self._classify(task, error, transient_failures + 1, ledger)
            kind, message, wait = decision.kind, decision.message, decision.wait_s
            if kind is ErrorKind.FATAL:
                ledger.release(task.key)
                return Ended("fatal", kind=kind, message=message, error=error)
            if not decision.retry:
                ledger.mark_failed(task.key, kind, message)
                return Ended("failed", kind=kind, message=message, error=error)
            if kind is ErrorKind.RATE_LIMITED:
                self._pacing.rate_limited(wait)
            transient_failures += decision.spends_attempt
            self._record.retrying(task.key, kind.value, message, wait)
            if kind is not ErrorKind.RATE_LIMITED:
                await self.control.sleep(wait)  # a stop cuts the backoff short; wait_turn then gives up

    def _classify(self, task: Task, error: BaseException | None, attempt: int, ledger: Ledger) -> Decision:
        """Record a failed attempt and decide what follows (see :mod:`.retry`); the message is redacted."""
        if isinstance(error, TaskError) and error.rate is not None:
            self._pacing.follow_server(error.rate)
        decision = decide(error, attempt, self.config.retry_policy, paced=self._pacing.limiter.limit is not None)
        decision = dataclasses.replace(decision, message=redact(decision.message, self._secrets))
        if not isinstance(error, TaskError) and not is_file_error(error):
            log.error("task %s raised", task.key, exc_info=error)
        connection_error = isinstance(error, TaskError) and error.connection_error
        billed = error.billed if isinstance(error, TaskError) else 0.0  # an answer paid for but unusable
        ledger.note_attempt_error(task.key, decision.kind, decision.message, connection_error=connection_error,
                                  billed=billed)
        if billed:
            self._record.wasted(billed)
        return decision

    def _set_running(self, delta: int) -> None:
        record = self._record
        record.progress = record.progress.evolve(
            running=record.progress.running + delta, in_flight_target=self._pacing.target.value,
            limit_per_min=self._pacing.limit_per_min, limit_by=self._pacing.binding)

    def _cancel_in_flight(self) -> None:
        for job in list(self._in_flight):
            job.cancel()

    def _on_control(self, state: ControlState) -> None:
        withdraw_waiting = getattr(self.work, "withdraw_waiting", None)  # None: the work keeps no queue
        if state is not ControlState.RUNNING and withdraw_waiting is not None:
            withdraw_waiting()  # Pause and Stop hold within what is being drawn (see the module)
        self._record.changed(state.value)

    def _outputs_are_images(self, task: Task) -> bool:
        return all(is_valid_image(Path(self.ledger.root) / path) for path in task.outputs)
