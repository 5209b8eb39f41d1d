"""Lets the parts of a job that are not tasks speak through the run's reporters.

A worker pool loading its models, or the training set's grids, judges and upscales, have news the
runner does not know of. An :class:`Announcer` handed to :func:`~imggen.engine.job.run_job` is
attached to every reporter of the run (the log file included) and sends them what it is told:
:meth:`say` a one-line message (a :class:`StateChanged` with that message, as the runner's own),
:meth:`stage` what the job is busy with (a :class:`StageChanged`, sent only when it changes).
Before the run has started, and after it ended, nothing is sent.
"""

from __future__ import annotations

import logging
from typing import Sequence

from .events import Event, Progress, Reporter, RunFinished, StageChanged, StateChanged

log = logging.getLogger("imggen.engine")


class Announcer:
    """A reporter that remembers the run's latest counters, and sends messages with them."""

    def __init__(self) -> None:
        self._reporters: list[Reporter] = []
        self._progress: Progress | None = None
        self._stage = ""

    def attach(self, reporters: Sequence[Reporter]) -> None:
        """The reporters messages go to (done by :func:`~imggen.engine.job.run_job`)."""
        self._reporters = list(reporters)

    def __call__(self, event: Event) -> None:
        self._progress = None if isinstance(event, RunFinished) else event.progress

    def say(self, message: str) -> None:
        self._send(lambda progress: StateChanged(progress, message))

    def stage(self, stage: str) -> None:
        if stage != self._stage:
            self._stage = stage
            self._send(lambda progress: StageChanged(progress, stage))

    def _send(self, make) -> None:
        if self._progress is None:
            return
        event = make(self._progress)
        for reporter in self._reporters:
            try:
                reporter(event)
            except Exception:  # a broken display must not break a paid run
                log.exception("reporter %r failed", reporter)
