"""One run's account, kept the same way whichever way its tasks are executed.

The runner (tasks through a work function) and batch mode (tasks through OpenAI's Batch API) both
plan their tasks, finish, heal, retry and stop them, and end with a summary through a
:class:`RunRecord`: the ledger's run row, the progress every reporter sees, the views written from
the ledger, and the :class:`~imggen.engine.config.RunSummary` with its failure kinds. So a healed
task is booked at what its files were billed, a broken display is logged and never breaks a paid
run, and a stop's reason is said once, on every kind of run.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable, Sequence

from .config import RunSummary
from .events import Event, Progress, Reporter, RunFinished, RunStarted, StateChanged, TaskFinished, TaskRetrying
from .ledger import Ledger
from .tasks import Outcome, Task

log = logging.getLogger("imggen.engine")

View = Callable[[Ledger], None]


class RunRecord:
    """The account of one run in ``ledger``, shown to ``reporters`` and written to ``views``."""

    def __init__(self, ledger: Ledger, *, reporters: Sequence[Reporter] = (), views: Sequence[View] = (),
                 view_interval_s: float = 0.0, paid_for: Callable[[Task], float] = lambda task: 0.0) -> None:
        self.ledger = ledger
        self.reporters = list(reporters)
        self.views = list(views)
        self.view_interval_s = view_interval_s
        self.paid_for = paid_for  # what a task's files on disk were billed (an earlier, killed run paid them)
        self.progress = Progress(total=0, state="planning")
        self.end_state: str | None = None  # set by the first stop: budget, fatal
        self.end_message: str | None = None
        self.run_id: int | None = None
        self._views_written_at = time.monotonic()
        self._changed_since_view = False

    def begin(self, tasks: Iterable[Task], *, retry_failed: bool, running: int = 0) -> int:
        """Plan ``tasks`` into the ledger as a new run and announce it; the run's id."""
        self.run_id = run_id = self.ledger.begin_run()
        total = self.ledger.plan(tasks, run_id, retry_failed=retry_failed)
        unfinished = self.ledger.counts(run_id)
        done = total - unfinished["pending"] - unfinished["failed"]
        self.progress = Progress(
            total=total, done=done, failed=unfinished["failed"], running=running,
            done_at_start=done + unfinished["failed"], spent_before=self.ledger.totals()["cost"],
        )
        self.emit(RunStarted(self.progress))
        return run_id

    # -- what happens to tasks --------------------------------------------------------------------
    def finished(self, key: str, status: str, *, cost: float = 0.0, error_kind: str | None = None,
                 message: str | None = None, outputs: tuple[str, ...] = ()) -> None:
        """A task ended: ``done``, ``failed`` or ``healed`` (the ledger is marked by the caller)."""
        self.progress = self.progress.after(status, cost)
        self._changed_since_view = True
        self.emit(TaskFinished(key, status, self.progress, error_kind, message, cost, outputs))
        self.write_views(force=False)

    def healed(self, task: Task) -> None:
        """Count ``task`` done from its files on disk. What they were billed goes into the ledger (money
        is counted as billed), not into this run's spending: an earlier, killed run paid it."""
        paid = Outcome(outputs=task.outputs, cost=self.paid_for(task), provenance={"healed": True})
        self.ledger.mark_done(task.key, paid, healed=True)
        self.progress = self.progress.evolve(healed=self.progress.healed + 1)
        self.finished(task.key, "healed", outputs=task.outputs)

    def wasted(self, billed: float) -> None:
        """A failed attempt was billed for an answer that could not be used: this run spent it."""
        self.progress = self.progress.evolve(spent=self.progress.spent + billed)

    def retrying(self, key: str, kind: str, message: str, wait_s: float) -> None:
        """A task will be tried again (a rate limit counts as a hit, anything else as a retry)."""
        if kind == "rate_limited":
            self.progress = self.progress.evolve(rate_limit_hits=self.progress.rate_limit_hits + 1)
        else:
            self.progress = self.progress.evolve(retries=self.progress.retries + 1)
        self.emit(TaskRetrying(key, kind, message, wait_s, self.progress))

    # -- how the run goes ---------------------------------------------------------------------------
    def stop(self, state: str, message: str) -> None:
        """End the run early as ``state`` (budget, fatal); the first stop's reason is the one kept."""
        if self.end_state is None:
            self.end_state, self.end_message = state, message
            self.emit(StateChanged(self.progress.evolve(state="stopping"), message))

    def changed(self, state: str) -> None:
        """The run control moved to ``state`` (running, paused, stopping)."""
        self.progress = self.progress.evolve(state=state)
        self.emit(StateChanged(self.progress))

    def say(self, message: str) -> None:
        self.emit(StateChanged(self.progress, message))

    def end(self, state: str, message: str | None = None) -> RunSummary:
        """Close the run as ``state`` (a stop's own state and reason win), write the views, and sum it up."""
        state, message = self.end_state or state, self.end_message or message
        self.ledger.end_run(self.run_id, state, message)
        self.write_views(force=True)  # also for a run that ended before any task did: its files say how
        self.progress = self.progress.evolve(state=state, running=0)
        self.emit(RunFinished(self.progress, message))
        return RunSummary(state, self.progress, message, tuple(self.ledger.failure_kinds(self.run_id)))

    # -- displays and views -------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        for reporter in self.reporters:
            try:
                reporter(event)
            except Exception:  # a broken display must not break a paid run
                log.exception("reporter %r failed", reporter)

    def write_views(self, *, force: bool) -> None:
        """Write the views from the ledger: with ``force``, now; else at most every ``view_interval_s``."""
        now = time.monotonic()
        if not self.views or not (force or now - self._views_written_at >= self.view_interval_s):
            return
        if not (force or self._changed_since_view):
            return
        for view in self.views:
            view(self.ledger)
        self._views_written_at, self._changed_since_view = now, False
