"""The run that the code now running belongs to: a task in flight reaches it here, to run a sub-task
by the run's rules (:func:`run_subtask`) or to read the run's ledger (:func:`this_runs_ledger`)."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Awaitable, Callable

from .ledger import Ledger
from .tasks import Outcome, Task, Work


@dataclass(frozen=True)
class ThisRun:
    """What a run's tasks may ask of it (set by :meth:`~.runner.Runner.run`)."""

    ledger: Ledger
    subtask: Callable[[Task, Work, Ledger], Awaitable[Outcome]]  # see :meth:`~.runner.Runner.subtask`


CURRENT_RUN: ContextVar[ThisRun | None] = ContextVar("this_run", default=None)


def _this_run() -> ThisRun:
    run = CURRENT_RUN.get()
    if run is None:
        raise RuntimeError("this runs only within a run of the engine's runner")
    return run


async def run_subtask(task: Task, work: Work, ledger: Ledger) -> Outcome:
    """``task`` run for a task in flight by the runner of this run (see :meth:`~.runner.Runner.subtask`)."""
    return await _this_run().subtask(task, work, ledger)


def this_runs_ledger() -> Ledger:
    """The ledger of the run this code runs in: work reads its tasks' records through it."""
    return _this_run().ledger
