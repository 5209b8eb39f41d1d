"""A notebook's last cell: the run's results (stats, gallery) shown when the run ends, however it was run.

Run All in Jupyter runs the last cell while the job still runs in the background (the job's cell
returns at once, so the panel's buttons keep working). :func:`show_when_done` gives that cell an
output area the job fills when it ends; under papermill, or when the cell runs again after the
end, it shows the results at once. A job that failed shows nothing more: its panel (or, headless,
its cell) already says why, once.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
from typing import Callable

import ipywidgets as widgets

from .job import NotebookJob

log = logging.getLogger("imggen.notebook")

Show = Callable[[NotebookJob], None]  # prints and displays a finished job's results


def show_when_done(job: NotebookJob, show: Show) -> None:
    """Call ``show(job)`` once ``job`` has ended, its output going to this cell."""
    if job.task is None or job.task.done():
        if job.error is None:
            show(job)
        return
    from IPython.display import display

    job.results_output = output = widgets.Output()
    display(output)
    job.task.add_done_callback(lambda _task: _show_into(job, show, output))


def _show_into(job: NotebookJob, show: Show, output: widgets.Output) -> None:
    """Run ``show`` with its printing and displays captured in order, then put them in ``output`` (set on
    the widget itself: it does not depend on which message the kernel is answering when the job ends)."""
    if job.error is not None:
        return
    shown: list[dict] = []
    with _captured(shown):
        try:
            show(job)
        except Exception as error:  # a broken display must not hide the results shown so far
            log.exception("showing the results failed")
            print(f"showing the results failed: {type(error).__name__}: {error}")
    output.outputs = (*output.outputs, *shown)


@contextlib.contextmanager
def _captured(shown: list[dict]):
    """Printing and displays while the block runs, appended to ``shown`` as notebook outputs, in the
    order they came. Binary data (a PIL image's PNG) is base64, as the kernel would send it: the
    widget's state carries it to the browser as JSON."""
    from IPython import get_ipython
    from IPython.core.displaypub import CapturingDisplayPublisher

    class Printed(io.TextIOBase):
        def write(self, text: str) -> int:
            if shown and shown[-1]["output_type"] == "stream":
                shown[-1]["text"] += text
            elif text:
                shown.append({"output_type": "stream", "name": "stdout", "text": text})
            return len(text)

    class Displayed(CapturingDisplayPublisher):
        def publish(self, data, metadata=None, *args, **kwargs) -> None:
            encoded = {kind: base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
                       for kind, value in data.items()}
            shown.append({"output_type": "display_data", "data": encoded, "metadata": metadata or {}})

    shell = get_ipython()
    publisher = getattr(shell, "display_pub", None)
    if shell is not None:
        shell.display_pub = Displayed()
    try:
        with contextlib.redirect_stdout(Printed()):
            yield
    finally:
        if shell is not None:
            shell.display_pub = publisher
