"""The async runner: plans tasks into the ledger, then runs the pending ones through a work function.

It owns the tasks in flight (a number, or "auto": see :mod:`.concurrency`), the requests limit (one
:mod:`.limiter` per run, taking the user's ``--rpm`` and whatever the provider's rate-limit headers
say in place), the retry policy per error kind, the budget cap, run control and progress events. It
knows nothing of providers or dataset layouts: ``work`` is any ``async (Task) -> Outcome`` callable.

Retry policy (decided by :mod:`.retry`, see :class:`~imggen.engine.errors.ErrorKind`):

* rate limited: every worker holds off until the server's wait has passed (without a readable
  wait, the limiter paces the retry from the server's count); the attempt budget is not spent.
  The retry loop is written out here rather than with a retry library because the attempt budget
  counts only transient failures and a rate-limit wait is shared by all workers.
* transient: exponential backoff with full jitter, at most ``max_attempts`` attempts in this run.
* permanent: recorded as failed, never retried (a rerun skips it unless ``retry_failed``).
* fatal: the run stops cleanly; the task goes back to pending; the message says what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Iterable, Iterator, Sequence

from ..settings import redact, secret_values
from ..storage.atomic import is_valid_image
from .concurrency import AUTO, InFlightGate, InFlightTarget
from .control import ControlState, RunControl, SignalHandlers
from .errors import ErrorKind, RateHint, TaskError
from .events import Event, Progress, Reporter, RunFinished, RunStarted, StateChanged, TaskFinished, TaskRetrying
from .ledger import Ledger, LedgerRow
from .limiter import RequestLimiter
from .retry import Decision, RetryPolicy, decide
from .tasks import Outcome, Task

log = logging.getLogger("imggen.engine")

Work = Callable[[Task], Awaitable[Outcome]]
View = Callable[[Ledger], None]


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` task starts in any ``period_s`` seconds."""

    requests: float
    period_s: float = 60.0

    @classmethod
    def per_minute(cls, rpm: float | None) -> "RateLimit | None":
        return cls(rpm) if rpm else None

    def limiter(self) -> RequestLimiter:
        return RequestLimiter(self.requests, self.period_s)


@dataclass(frozen=True)
class RunnerConfig:
    concurrency: int | str = AUTO  # tasks in flight: a number, or "auto" to follow rate x latency
    max_concurrency: int = 256  # the ceiling of "auto"
    rate_limit: RateLimit | None = None
    max_attempts: int = 3  # attempts per task per run for transient errors
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    default_rate_limit_wait_s: float = 10.0  # a 429 without a Retry-After or a count the limiter can use
    limit_window_s: float = 60.0  # the window a provider's limit header counts over (OpenAI: a minute)
    budget: float | None = None  # hard cap on money spent in this run
    estimate_basis: str = "its estimate"  # what the tasks' costs rest on, for the budget's message
    retry_failed: bool = False  # also retry tasks that failed permanently before
    view_interval_s: float = 10.0  # how often views (state files) are rewritten during a run

    def __post_init__(self) -> None:
        if self.concurrency != AUTO and not (isinstance(self.concurrency, int) and self.concurrency >= 1):
            raise ValueError(f"concurrency must be at least 1 or {AUTO!r}")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.budget is not None and self.budget < 0:
            raise ValueError("budget cannot be negative")
        if self.limit_window_s <= 0:
            raise ValueError("limit_window_s must be positive")

    def limiter(self) -> RequestLimiter:
        """A run's limiter: the user's limit if any, over its period (else the provider's window)."""
        if self.rate_limit is not None:
            return self.rate_limit.limiter()
        return RequestLimiter(None, self.limit_window_s)

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts, self.backoff_base_s, self.backoff_max_s,
                           self.default_rate_limit_wait_s)


@dataclass(frozen=True)
class RunSummary:
    """How a run ended. ``state`` is finished, stopped, budget or fatal."""

    state: str
    progress: Progress
    message: str | None = None
    failures: tuple[tuple[str, int, str], ...] = ()  # (error kind, tasks, the first one's message) of this plan
    unpriced: str = ""  # paid calls of this run whose price is unknown, in words ("" when none)

    @property
    def ok(self) -> bool:
        return self.state == "finished" and self.progress.failed == 0


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
    ) -> None:
        self.ledger = ledger
        self.work = work
        self.config = config
        self.control = control or RunControl()
        self.reporters = list(reporters)
        self.views = list(views)
        self.outputs_valid = outputs_valid or self._outputs_are_images
        self.paid_for = paid_for or (lambda task: 0.0)
        self._secrets = secret_values()

    # -- public -------------------------------------------------------------------------------
    async def run(self, tasks: Iterable[Task], *, handle_signals: bool = False) -> RunSummary:
        """Plan ``tasks`` and run the unfinished ones. With ``handle_signals``, Ctrl-C stops the run."""
        loop = asyncio.get_running_loop()
        self._in_flight: set[asyncio.Task] = set()
        self._hold_until = 0.0
        self._limiter = self.config.limiter()
        self._target = InFlightTarget(self.config.concurrency, ceiling=self.config.max_concurrency)
        self._gate = InFlightGate(self._target)
        self._reserved = 0.0
        self._budget_freed = asyncio.Event()
        self._end_state: str | None = None
        self._end_message: str | None = None
        self._views_written_at = time.monotonic()
        self._changed_since_view = False
        self._progress = Progress(total=0, state="planning")
        with SignalHandlers(self.control, loop, self._say) if handle_signals else contextlib.nullcontext():
            return await self._plan_and_run(loop, tasks)

    async def _plan_and_run(self, loop: asyncio.AbstractEventLoop, tasks: Iterable[Task]) -> RunSummary:
        run_id = self.ledger.begin_run()
        total = self.ledger.plan(tasks, run_id, retry_failed=self.config.retry_failed)
        unfinished = self.ledger.counts(run_id)
        done = total - unfinished["pending"] - unfinished["failed"]
        self._progress = Progress(
            total=total, done=done, failed=unfinished["failed"], done_at_start=done + unfinished["failed"],
            spent_before=self.ledger.totals()["cost"],
        )
        self.control.bind(loop, on_immediate_stop=self._cancel_in_flight, on_change=self._on_control)
        self._emit(RunStarted(self._progress))
        source = self.ledger.pending(run_id)
        try:
            worker_count = max(min(self._target.ceiling, total - done), 1)
            workers = [loop.create_task(self._worker(source)) for _ in range(worker_count)]
            results = await asyncio.gather(*workers, return_exceptions=True)
            for result in results:  # workers cancelled by an immediate stop end with CancelledError
                if isinstance(result, Exception):
                    raise result
        finally:
            self.control.unbind()
            state = self._final_state()
            self.ledger.end_run(run_id, state, self._end_message)
            self._write_views(force=self._changed_since_view)
            self._progress = self._progress.evolve(state=state, running=0)
            self._emit(RunFinished(self._progress, self._end_message))
        return RunSummary(state, self._progress, self._end_message, tuple(self.ledger.failure_kinds(run_id)))

    # -- workers ---------------------------------------------------------------------------
    async def _worker(self, source: Iterator[LedgerRow]) -> None:
        # The next task is taken before a pause is waited out: a run paused with nothing left to
        # start ends when its last task does, instead of sitting "paused: 20/20 done".
        while self._end_state is None and (row := next(source, None)) is not None:
            if not await self.control.proceed():
                return  # the row is still pending in the ledger
            await self._gate.acquire()
            try:
                if not await self._take(row.task):
                    return
            finally:
                self._gate.release()

    async def _take(self, task: Task) -> bool:
        """Run ``task`` (or count it healed); False when the budget is spent."""
        if task.outputs and self.outputs_valid(task):
            self._finish_healed(task)
            return True
        if not await self._reserve_budget(task):
            return False
        job = asyncio.current_task()
        self._in_flight.add(job)
        try:
            await self._run_task(task)
        finally:
            self._in_flight.discard(job)
            self._reserved -= task.cost
            self._budget_freed.set()
        return True

    async def _run_task(self, task: Task) -> None:
        transient_failures = 0
        while True:
            if not await self._wait_turn():
                self.ledger.release(task.key)
                return
            self.ledger.mark_started(task.key)
            self._set_running(+1)
            began = time.monotonic()
            try:
                outcome, error = await self.work(task), None
            except asyncio.CancelledError:
                self.ledger.release(task.key)
                raise
            except Exception as exc:
                outcome, error = None, exc
            finally:
                self._set_running(-1)

            if outcome is not None:
                self.ledger.mark_done(task.key, outcome)
                if outcome.rate is not None:
                    self._adapt(outcome.rate)
                self._follow_latency(time.monotonic() - began)
                self._finish(task.key, "done", cost=outcome.cost, outputs=tuple(outcome.outputs))
                return
            decision = self._classify(task, error, transient_failures + 1)
            kind, message, wait = decision.kind, decision.message, decision.wait_s
            if kind is ErrorKind.FATAL:
                self.ledger.release(task.key)
                self._stop_run("fatal", message)
                return
            if not decision.retry:
                self.ledger.mark_failed(task.key, kind, message)
                self._finish(task.key, "failed", error_kind=kind.value, message=message)
                return
            if kind is ErrorKind.RATE_LIMITED:
                self._hold_all(wait)
                self._target.rate_limited()
                self._progress = self._progress.evolve(rate_limit_hits=self._progress.rate_limit_hits + 1)
            else:
                self._progress = self._progress.evolve(retries=self._progress.retries + 1)
            transient_failures += decision.spends_attempt
            self._emit(TaskRetrying(task.key, kind.value, message, wait, self._progress))
            if kind is not ErrorKind.RATE_LIMITED:
                await self.control.sleep(wait)  # a stop cuts the backoff short; _wait_turn then gives up

    def _classify(self, task: Task, error: BaseException | None, attempt: int) -> Decision:
        """Record a failed attempt and decide what follows (see :mod:`.retry`); the message is redacted."""
        if isinstance(error, TaskError) and error.rate is not None:
            self._adapt(error.rate)
        decision = decide(error, attempt, self.config.retry_policy, paced=self._limiter.limit is not None)
        decision = dataclasses.replace(decision, message=redact(decision.message, self._secrets))
        if not isinstance(error, TaskError):
            log.error("task %s raised", task.key, exc_info=error)
        connection_error = isinstance(error, TaskError) and error.connection_error
        self.ledger.note_attempt_error(task.key, decision.kind, decision.message, connection_error=connection_error)
        return decision

    async def _wait_turn(self) -> bool:
        """Wait out any rate-limit hold and the limiter; False if the run stopped meanwhile."""
        while True:
            delay = self._hold_until - time.monotonic()
            if delay > 0 and not await self.control.sleep(delay):
                return False
            if not await self._limiter.acquire(self.control.sleep):
                return False
            if not await self.control.proceed() or self._end_state is not None:
                return False
            if self._hold_until <= time.monotonic():
                return True

    def _hold_all(self, seconds: float) -> None:
        self._hold_until = max(self._hold_until, time.monotonic() + seconds)

    def _adapt(self, hint: RateHint) -> None:
        """Follow the server in the run's one limiter: its limit (never above the user's) and its count.
        Only while no limit is known at all does a spent window hold every worker until it is full again."""
        if hint.limit_per_min:
            per_period = hint.limit_per_min * self._limiter.period_s / self.config.limit_window_s
            self._limiter.learn_limit(max(per_period, 1.0))
        if hint.remaining is None:
            return
        if self._limiter.limit is not None:
            self._limiter.observe(hint.remaining, hint.reset_s)
        elif hint.remaining == 0 and hint.reset_s:
            self._hold_all(hint.reset_s)

    def _follow_latency(self, latency_s: float) -> None:
        """Let the in-flight target follow rate x latency (with ``concurrency="auto"``)."""
        limit = self._limiter.limit
        self._target.succeeded(latency_s, limit / self._limiter.period_s if limit is not None else None)
        self._gate.wake()

    async def _reserve_budget(self, task: Task) -> bool:
        """Reserve ``task``'s estimate within the budget. While tasks in flight hold reservations it
        waits for them to be billed (often below their estimates) before it decides the budget is spent."""
        budget = self.config.budget
        while budget is not None and self._progress.spent + self._reserved + task.cost > budget + 1e-9:
            if self._reserved <= 1e-9:
                self._stop_run(
                    "budget",
                    f"budget reached: spent ${self._progress.spent:.2f} of ${budget:.2f} in this run, and the next "
                    f"task may cost up to ${task.cost:.2f} ({self.config.estimate_basis}); a budget counts this run "
                    "only: rerun to continue (with the same or a larger --budget)",
                )
                return False
            self._budget_freed.clear()
            await self._budget_freed.wait()
            if self._end_state is not None or self.control.state is ControlState.STOPPING:
                return False
        self._reserved += task.cost
        return True

    # -- bookkeeping -----------------------------------------------------------------------
    def _finish(self, key: str, status: str, *, cost: float = 0.0, error_kind: str | None = None,
                message: str | None = None, outputs: tuple[str, ...] = ()) -> None:
        progress = self._progress.after(status, cost)
        self._progress = progress
        self._changed_since_view = True
        self._emit(TaskFinished(key, status, progress, error_kind, message, cost, outputs))
        self._write_views(force=False)

    def _finish_healed(self, task: Task) -> None:
        """Count a task done from its files on disk. What they were billed goes into the ledger (money
        is counted as billed), not into this run's spending: an earlier, killed run paid it."""
        paid = Outcome(outputs=task.outputs, cost=self.paid_for(task), provenance={"healed": True})
        self.ledger.mark_done(task.key, paid, healed=True)
        self._progress = self._progress.evolve(healed=self._progress.healed + 1)
        self._finish(task.key, "healed", outputs=task.outputs)

    def _set_running(self, delta: int) -> None:
        limit = self._limiter.limit
        self._progress = self._progress.evolve(
            running=self._progress.running + delta, in_flight_target=self._target.value,
            limit_per_min=limit * 60.0 / self._limiter.period_s if limit is not None else None)

    def _stop_run(self, state: str, message: str) -> None:
        if self._end_state is None:
            self._end_state, self._end_message = state, message
            self._emit(StateChanged(self._progress.evolve(state="stopping"), message))

    def _final_state(self) -> str:
        if self._end_state is not None:
            return self._end_state
        return "stopped" if self.control.state is ControlState.STOPPING else "finished"

    def _cancel_in_flight(self) -> None:
        for job in list(self._in_flight):
            job.cancel()

    def _on_control(self, state: ControlState) -> None:
        self._progress = self._progress.evolve(state=state.value)
        self._emit(StateChanged(self._progress))

    def _say(self, message: str) -> None:
        self._emit(StateChanged(self._progress, message))

    def _emit(self, event: Event) -> None:
        for reporter in self.reporters:
            try:
                reporter(event)
            except Exception:  # a broken display must not break a paid run
                log.exception("reporter %r failed", reporter)

    def _write_views(self, *, force: bool) -> None:
        now = time.monotonic()
        if not self.views or not (force or now - self._views_written_at >= self.config.view_interval_s):
            return
        if not (force or self._changed_since_view):
            return
        for view in self.views:
            view(self.ledger)
        self._views_written_at, self._changed_since_view = now, False

    def _outputs_are_images(self, task: Task) -> bool:
        return all(is_valid_image(Path(self.ledger.root) / path) for path in task.outputs)
