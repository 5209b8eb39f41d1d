"""One call that runs a list of tasks in an output folder with the standard files around it.

It opens the folder's ledger, runs the tasks, and keeps ``generation_state.json`` and the stats
file up to date; pipelines, the demo and the notebook helper all start their work here.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from ..storage.lock import folder_lock
from .announcer import Announcer
from .budget import Budget
from .control import RunControl
from .events import Reporter
from .ledger import Ledger
from .paid_calls import with_paid_calls
from .reporters import LogReporter
from .rounds import Round
from .runner import Runner, RunnerConfig, RunSummary, View, Work
from .stats import write_generation_state, write_processing_stats
from .tasks import Task


@dataclass
class JobFiles:
    """Where a job keeps its ledger and views, relative to its output root unless absolute."""

    root: Path
    state: Path = Path("generation_state.json")
    stats: Path = Path("processing_stats.json")
    log: Path = Path("run.log")
    extra_views: list = field(default_factory=list)
    stats_extra: Callable | None = None  # Ledger -> more fields for the stats file

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.state, self.stats, self.log = (self.root / p for p in (self.state, self.stats, self.log))


def job_views(files: JobFiles) -> list[View]:
    """The views a job keeps up to date: the state file, the stats file and the job's own."""
    return [
        lambda ledger: write_generation_state(ledger, files.state),
        lambda ledger: write_processing_stats(ledger, files.stats, files.stats_extra),
        *files.extra_views,
    ]


async def run_job(
    files: JobFiles | str | os.PathLike,
    tasks: Iterable[Task],
    work: Work,
    *,
    config: RunnerConfig = RunnerConfig(),
    control: RunControl | None = None,
    reporters: Sequence[Reporter] = (),
    handle_signals: bool = False,
    outputs_valid: Callable[[Task], bool] | None = None,
    paid_for: Callable[[Task], float] | None = None,
    rounds: Mapping[str, Round] | None = None,
    announcer: Announcer | None = None,
    budget: Budget | None = None,
) -> RunSummary:
    """Run ``tasks`` through ``work`` with the ledger, state file and stats file of ``files``.

    ``outputs_valid`` decides whether a task's files already on disk stand for its result (by default:
    they all decode as images); ``paid_for`` says what such files were billed, for the ledger (by
    default nothing is known: 0). ``rounds`` (see :mod:`.rounds`) are recorded in the ledger, inside the
    folder's lock, before the tasks are planned, so a run killed at any point leaves tasks only of a
    recorded round. ``announcer`` gets every reporter of the run, the log file's included, for the
    job's own messages. ``budget``: the run's (see :mod:`.budget`), where its paid calls reserve from it
    too; by default one from ``config``. Where the folder keeps a book of paid calls (:mod:`.paid_calls`),
    the summary's spend is what they billed in this run. Raises :class:`~imggen.storage.lock.FolderBusy` if another run
    holds the folder.
    """
    files = files if isinstance(files, JobFiles) else JobFiles(Path(files))
    views = job_views(files)
    with folder_lock(files.root), Ledger(files.root) as ledger:
        if rounds:
            ledger.record_rounds(dict(rounds))
        reporters = [LogReporter(files.log), *reporters]
        if announcer is not None:
            announcer.attach(reporters)
            reporters = [announcer, *reporters]
        runner = Runner(
            ledger,
            work,
            config=config,
            control=control,
            reporters=reporters,
            views=views,
            outputs_valid=outputs_valid,
            paid_for=paid_for,
            budget=budget,
        )
        started = time.time()
        summary = await runner.run(tasks, handle_signals=handle_signals)
    return with_paid_calls(summary, ledger.path, since=started)
