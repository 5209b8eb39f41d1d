"""Run a job from a notebook: live widgets in Jupyter, a blocking run with text progress under papermill.

Interactive: the job becomes a background task on the kernel's own event loop and the cell returns
at once, so Pause / Resume / Stop clicks arrive while it runs on every ipykernel version (button
handlers may run on a subshell thread; :class:`~imggen.engine.control.RunControl` is thread-safe).
Headless (papermill, nbconvert): the same call awaits the job in the cell, printing a progress line
every few seconds (into the notebook and to the terminal papermill runs in), so the notebook ends
only when the job does; a run that ends early (budget, fatal error, stop) raises :class:`RunEndedEarly`,
so papermill exits with an error the caller sees.

One job per key (by default its title) runs in a kernel at a time: running the cell again while it
runs (Run All after Stop, say) shows the running job again instead of starting a second one on the
same folder.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import os
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import ipywidgets as widgets

from ..engine.control import RunControl
from ..engine.events import Event, Progress, RunFinished, RunStarted, StageChanged, StateChanged, TaskFinished
from ..engine.reporters import Notices
from ..engine.runner import RunSummary
from ..literal import html_text, printable
from .display import gallery_html

StartJob = Callable[[RunControl, Callable[[Event], None]], Awaitable[Any]]  # a pipeline result, or a RunSummary

WIDGET_UPDATES_PER_S = 5
GALLERY_SIZE = 8  # the latest images the panel shows
GALLERY_UPDATES_PER_S = 1
HEADLESS_LINE_EVERY_S = 5.0
_RUNNING_JOBS: dict[str, "NotebookJob"] = {}  # by key: strong references, or the loop may drop a running job
ENDED_EARLY = ("budget", "fatal", "stopped")
# Which buttons a state leaves enabled: (pause, resume, stop).
_BUTTONS = {"running": (True, False, True), "planning": (True, False, True), "starting": (True, False, True),
            "paused": (False, True, True)}


class RunEndedEarly(RuntimeError):
    """A headless run ended before its work did (budget, fatal error or stop); the message says why."""


def is_interactive_frontend() -> bool:
    """True in Jupyter front ends, False under papermill, nbconvert or a plain interpreter.

    nbclient (behind papermill and nbconvert) sends every cell with ``allow_stdin`` false;
    JupyterLab and Notebook send it true.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    kernel = getattr(get_ipython(), "kernel", None)
    if kernel is None:
        return False
    return bool(kernel.get_parent("shell").get("content", {}).get("allow_stdin", False))


class NotebookJob:
    """A job started from a notebook: its control, its live counters, and (interactive) its widgets."""

    def __init__(self, title: str, interactive: bool, images: Path | None = None) -> None:
        self.title = title
        self.interactive = interactive
        self.images = images  # the folder finished tasks' outputs are relative to
        self.latest: collections.deque[tuple[Path, str]] = collections.deque(maxlen=GALLERY_SIZE)
        self._gallery_drawn = 0.0
        self.control = RunControl()
        self.progress: Progress | None = None
        self._notices = Notices()
        self.notice = ""  # the latest of the run's notices: resuming, a rate-limit hold, a message
        self.stage = ""  # what the job is busy with, for jobs that say (the training set's grids, judging...)
        self.result: Any = None  # what the pipeline returned (its result, with .summary)
        self.error: BaseException | None = None
        self.results_output: widgets.Output | None = None  # the last cell's, filled when the run ends
        self.task: asyncio.Task | None = None
        self._last_draw = 0.0
        self._trailing_draw: asyncio.TimerHandle | None = None
        self._last_line = 0.0
        if interactive:
            self._build_widgets()

    # -- what a user calls -------------------------------------------------------------------
    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def stop(self) -> None:
        self.control.stop()

    @property
    def summary(self) -> RunSummary | None:
        """How the run ended: the result's ``summary`` (the result itself for a bare engine job)."""
        return getattr(self.result, "summary", self.result)

    @property
    def state(self) -> str:
        if self.summary is not None:
            return self.summary.state
        return self.progress.state if self.progress else "starting"

    async def wait(self) -> None:
        """Wait for the end of the job. Returns None so the cell does not display the widgets twice."""
        if self.state == "paused":
            raise RuntimeError("the job is paused: resume it first (a paused job would never end)")
        if self.task is not None:
            await asyncio.shield(self.task)

    def __repr__(self) -> str:
        progress = self.progress
        counts = f" {progress.done}/{progress.total} done, {progress.failed} failed" if progress else ""
        return f"<NotebookJob {self.title!r} {self.state}{counts}>"

    # -- the reporter ------------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        self.progress = event.progress
        notice = self._notices(event)
        self.notice = notice or self.notice
        if isinstance(event, StageChanged):
            self.stage = event.stage
        if isinstance(event, TaskFinished) and event.outputs and self.images is not None:
            self.latest.appendleft((self.images / event.outputs[0], event.key))
        final = isinstance(event, (RunStarted, RunFinished, StateChanged)) or notice is not None
        if self.interactive:
            self._draw(event, force=final)
        elif final or time.monotonic() - self._last_line >= HEADLESS_LINE_EVERY_S:
            self._print_line(event, notice)

    def _print_line(self, event: Event, notice: str | None) -> None:
        self._last_line = time.monotonic()
        stage = f"; {self.stage}" if self.stage else ""
        line = printable(f"[{self.title}] {_describe(event.progress)}{stage}" + (f" ({notice})" if notice else ""))
        print(line, flush=True)
        _to_terminal(line)

    # -- widgets -------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        self.pause_button = widgets.Button(description="Pause", icon="pause")
        self.resume_button = widgets.Button(description="Resume", icon="play")
        self.stop_button = widgets.Button(description="Stop", icon="stop", button_style="danger")
        self.bar = widgets.IntProgress(value=0, min=0, max=1, description=self.title)
        self.status = widgets.Label("starting")
        self.stage_label = widgets.Label("")
        self.notice_label = widgets.Label("")
        self.stats = widgets.HTML("")
        self.gallery = widgets.HTML("")
        for widget, css in (
            (self.pause_button, "imggen-pause"),
            (self.resume_button, "imggen-resume"),
            (self.stop_button, "imggen-stop"),
            (self.bar, "imggen-progress"),
            (self.status, "imggen-status"),
            (self.stage_label, "imggen-stage"),
            (self.notice_label, "imggen-notice"),
            (self.stats, "imggen-stats"),
            (self.gallery, "imggen-latest"),
        ):
            widget.add_class(css)
        self.pause_button.on_click(lambda _button: self.control.pause())
        self.resume_button.on_click(lambda _button: self.control.resume())
        self.stop_button.on_click(lambda _button: self.control.stop())
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.pause_button, self.resume_button, self.stop_button]),
                widgets.HBox([self.bar, self.status, self.stage_label]),
                self.notice_label,
                self.stats,
                self.gallery,
            ]
        )

    def _draw(self, event: Event, *, force: bool) -> None:
        """Update the widgets at most WIDGET_UPDATES_PER_S times a second, always ending on the latest event."""
        wait = self._last_draw + 1.0 / WIDGET_UPDATES_PER_S - time.monotonic()
        if self._trailing_draw is not None:
            self._trailing_draw.cancel()
            self._trailing_draw = None
        if wait > 0 and not force:
            self._trailing_draw = asyncio.get_running_loop().call_later(wait, functools.partial(self._draw, event, force=True))
            return
        self._last_draw = time.monotonic()
        progress = event.progress
        self.bar.max = max(progress.total, 1)
        self.bar.value = progress.done + progress.failed
        self.stats.value = f"<code>{_describe(progress)}</code>"
        self.stage_label.value, self.notice_label.value = self.stage, self.notice
        self._enable_buttons(progress.state if not isinstance(event, RunFinished) else "ended")
        self.status.value = progress.state  # last: once it says finished, the counts shown are final
        if self.latest and (force or time.monotonic() - self._gallery_drawn >= 1.0 / GALLERY_UPDATES_PER_S):
            self._gallery_drawn = time.monotonic()
            self.gallery.value = gallery_html(self.latest)


    def _enable_buttons(self, state: str) -> None:
        """Only the buttons that do something in ``state``: none once the job stops or ends."""
        pause, resume, stop = _BUTTONS.get(state, (False, False, False))
        self.pause_button.disabled, self.resume_button.disabled, self.stop_button.disabled = (
            not pause, not resume, not stop)


def _describe(progress: Progress) -> str:
    running = progress.state == "running" and progress.remaining and progress.eta_s is not None
    eta = f", ETA {progress.eta_s:.0f}s" if running else ""
    return (
        f"{progress.state}: {progress.done}/{progress.total} done, {progress.failed} failed, "
        f"{progress.pace}, {progress.rate_per_min:.0f}/min, ${progress.spent:.2f} spent{eta}"
    )


async def run_in_notebook(
    start: StartJob, *, title: str = "imggen", interactive: bool | None = None, key: str | os.PathLike | None = None,
    images: str | os.PathLike | None = None,
) -> NotebookJob:
    """Start a job from a notebook cell: ``job = await run_in_notebook(start, interactive=interactive)``.

    ``start(control, reporter)`` must return the job's coroutine, passing both on to the pipeline;
    what the pipeline returns is ``job.result`` once the run has ended (and ``job.summary`` its summary).
    ``interactive=None`` decides from the front end: widgets in Jupyter (the cell returns at once),
    a blocking run with text progress under papermill, which raises :class:`RunEndedEarly` when the
    run stops before its work is done. ``key`` (default: the title; pass the output folder) names
    the job: while one with the same key still runs in this kernel, it is shown again, not doubled.
    ``images`` is the folder the tasks' outputs are relative to (the run's output): the panel shows
    the latest of them, and ``job.latest`` lists them (path, task key) for a gallery after the run.
    """
    from IPython.display import display

    interactive = is_interactive_frontend() if interactive is None else interactive
    name = str(key if key is not None else title)
    running = _RUNNING_JOBS.get(name)
    if running is not None and running.task is not None and not running.task.done():
        print(f"{title}: a run on this folder is still {running.state} in this kernel; it is shown below. "
              "Stop it there (or wait for it), then run this cell again.")
        if running.interactive:
            display(running.widget)
        return running
    job = NotebookJob(title, interactive, Path(images) if images is not None else None)

    async def body() -> None:
        try:
            job.result = await start(job.control, job)
        except BaseException as error:  # shown in the panel; headless runs re-raise below
            job.error = error
            if job.interactive:
                job.status.value = "error"
                job._enable_buttons("error")
                job.stats.value = f"<b>{type(error).__name__}</b>: {html_text(error)}"
            raise

    job.task = asyncio.get_running_loop().create_task(body())
    _RUNNING_JOBS[name] = job
    job.task.add_done_callback(lambda _task: _RUNNING_JOBS.pop(name, None) if _RUNNING_JOBS.get(name) is job else None)
    if interactive:
        display(job.widget)
        return job
    await job.task
    summary = job.summary
    if summary is not None and summary.state in ENDED_EARLY:
        raise RunEndedEarly(f"{title} {summary.state}: {summary.message or 'the run stopped before its end'}; "
                            "rerun to continue where it stopped")
    return job


def _to_terminal(line: str) -> None:
    """Also write a headless progress line to the kernel's own stderr: the terminal papermill runs in."""
    terminal = sys.__stderr__
    if terminal is not None and terminal is not sys.stderr:
        try:
            terminal.write(line + "\n")
            terminal.flush()
        except (OSError, ValueError):  # a closed or detached stream: the notebook still has the line
            pass

