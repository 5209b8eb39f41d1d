"""Reporters that show a run's progress events: a rich display for terminals and a log file.

The notebook panel in :mod:`imggen.notebook` is a third reporter; any callable taking an event is one.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column

from ..literal import LiteralFormatter, line
from ..settings import RedactingFilter
from .events import Event, RunFinished, RunStarted, StageChanged, StateChanged, TaskFinished, TaskRetrying
from .events import Progress as RunProgress


class RichReporter:
    """A live progress bar: done/total, rate, ETA, failures, money spent and the job's stage, with
    the run's notices (see :class:`Notices`) printed above it."""

    def __init__(self, description: str = "generating", console: Console | None = None) -> None:
        self._console = console or Console(stderr=True, soft_wrap=True)
        self._bar = Progress(  # counts and money are never cut: the details after them wrap instead
            TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True)),
            BarColumn(bar_width=20),
            # the summary's count (failures are apart), then the money
            TextColumn("{task.fields[done]}/{task.total} done {task.percentage:>3.0f}% [green]${task.fields[spent]}[/] "
                       "[red]{task.fields[failed]} failed", table_column=Column(no_wrap=True)),
            TimeRemainingColumn(table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[rate]}/min {task.fields[pace]} {task.fields[state]} {task.fields[stage]}",
                       table_column=Column(overflow="fold")),
            console=self._console,
            transient=False,
        )
        self._description = description
        self._task_id = None
        self._notices = Notices()

    def __call__(self, event: Event) -> None:
        notice = self._notices(event)
        if isinstance(event, RunStarted):
            self._bar.start()
            self._task_id = self._bar.add_task(self._description, total=event.progress.total, stage="",
                                               **_fields(event.progress))
            self._bar.update(self._task_id, completed=event.progress.done + event.progress.failed)
        if self._task_id is None:
            return
        progress = event.progress
        stage = {"stage": event.stage} if isinstance(event, StageChanged) else {}
        self._bar.update(self._task_id, completed=progress.done + progress.failed, **_fields(progress), **stage)
        if isinstance(event, TaskFinished) and event.status == "failed":
            self._bar.console.print(line(("failed", "red"), " ", event.key, ": ", event.message or ""), soft_wrap=True)
        if notice:
            self._bar.console.print(line((notice, "yellow")), soft_wrap=True)
        if isinstance(event, RunFinished):
            self._bar.refresh()
            self._bar.stop()


class Notices:
    """The one-line notices in a run's events, for every display to show alike: what a rerun found
    (``resuming: ...``), a rate-limit hold (``waiting 20 s: rate limited``, once per hold), and the
    messages of the runner and of the job (budget reached, interrupt, workers loading), each once."""

    def __init__(self) -> None:
        self._hold_shown_until = 0.0  # the end of the last rate-limit hold announced
        self._said: set[str] = set()  # the runner's and the job's messages shown so far

    def __call__(self, event: Event) -> str | None:
        """The notice ``event`` carries, or None."""
        if isinstance(event, RunStarted):
            return resuming_line(event.progress) if event.progress.done_at_start else None
        if isinstance(event, TaskRetrying) and event.error_kind == "rate_limited":
            return self._hold(event.wait_s)
        if isinstance(event, (StateChanged, RunFinished)) and event.message:
            return self._once(event.message)
        return None

    def _once(self, message: str) -> str | None:
        """A message once: a run that stops says why when it stops, and its end carries the same reason."""
        if message in self._said:
            return None
        self._said.add(message)
        return message

    def _hold(self, wait_s: float) -> str | None:
        """Once per hold, the reason the counters stand still."""
        ends = time.monotonic() + wait_s
        announce = wait_s >= 1 and ends > self._hold_shown_until + 1
        self._hold_shown_until = max(self._hold_shown_until, ends)
        return f"waiting {wait_s:.0f} s: rate limited" if announce else None


def resuming_line(progress: RunProgress) -> str:
    """What a rerun found: ``resuming: 12 of 40 finished earlier, $0.48 spent earlier``."""
    return (f"resuming: {progress.done_at_start} of {progress.total} finished earlier, "
            f"${progress.spent_before:.2f} spent earlier")


def _fields(progress: RunProgress) -> dict[str, object]:
    return {
        "rate": f"{progress.rate_per_min:.0f}",
        "done": progress.done,
        "failed": progress.failed,
        "pace": progress.pace,
        "spent": f"{progress.spent:.2f}",
        "state": progress.state,
    }


class LogReporter:
    """Appends one line per finished, failed or retried task, and the run's start and end, to a log file.

    Keys and messages come from user files and servers: their control characters are escaped, so
    each event stays one line."""

    def __init__(self, path: str | os.PathLike, name: str = "imggen.run") -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._handler = logging.FileHandler(path, encoding="utf-8")
        self._handler.setFormatter(LiteralFormatter("%(asctime)s %(levelname)s %(message)s"))
        self._handler.addFilter(RedactingFilter())
        self._log = logging.getLogger(f"{name}.{id(self)}")
        self._log.propagate = False
        self._log.setLevel(logging.INFO)
        self._log.addHandler(self._handler)

    def __call__(self, event: Event) -> None:
        progress = event.progress
        if isinstance(event, RunStarted):
            self._log.info("run started: %d tasks, %d already done", progress.total, progress.done)
        elif isinstance(event, TaskFinished):
            level = logging.WARNING if event.status == "failed" else logging.INFO
            detail = f" [{event.error_kind}] {event.message}" if event.status == "failed" else ""
            self._log.log(level, "%s %s%s", event.status, event.key, detail)
        elif isinstance(event, TaskRetrying):
            self._log.info("retry %s in %.1fs after %s: %s", event.key, event.wait_s, event.error_kind, event.message)
        elif isinstance(event, StateChanged):
            self._log.info("state %s%s", progress.state, f": {event.message}" if event.message else "")
        elif isinstance(event, RunFinished):
            self._log.info(
                "run %s: %d done, %d failed, %d pending, $%.4f spent%s",
                progress.state, progress.done, progress.failed, progress.remaining, progress.spent,
                f" ({event.message})" if event.message else "",
            )
            self.close()

    def close(self) -> None:
        self._handler.close()
        self._log.removeHandler(self._handler)
