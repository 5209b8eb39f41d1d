"""What the terminal display says: a rerun says what it resumes, a rate-limit hold says why the bar stands
still (once per hold), and the bar's done count is the summary's (failures are counted apart)."""

from __future__ import annotations

import io
import re

from rich.console import Console

from imggen.engine.events import Progress, RunFinished, RunStarted, TaskFinished, TaskRetrying
from imggen.engine.ledger import Ledger
from imggen.engine.reporters import RichReporter
from imggen.engine.runner import Runner, RunnerConfig

from conftest import Recorder, make_tasks


def screen_of(events) -> str:
    screen = io.StringIO()
    reporter = RichReporter("test", Console(file=screen, width=200))
    for event in events:
        reporter(event)
    return screen.getvalue()


def test_a_hold_is_announced_once_and_the_bar_counts_what_the_summary_counts():
    start = Progress(total=10)
    after = start.evolve(done=7, failed=2)
    text = screen_of([
        RunStarted(start),
        TaskRetrying("t1", "rate_limited", "429", 20.0, start),
        TaskRetrying("t2", "rate_limited", "429", 19.5, start),  # the same hold, seen by another worker
        TaskRetrying("t3", "transient", "500", 2.0, start),
        TaskFinished("t9", "failed", after, "permanent", "refused"),
        RunFinished(after),
    ])
    assert text.count("waiting 20 s: rate limited") == 1 and "waiting 2 s" not in text
    assert re.search(r"7/10 done", text) and "9/10" not in text


async def test_a_rerun_says_what_it_resumes(out):
    with Ledger(out) as ledger:
        await Runner(ledger, Recorder(), config=RunnerConfig(concurrency=2)).run(make_tasks(3, cost=0.04))
        screen = io.StringIO()
        display = RichReporter("test", Console(file=screen, width=200))
        await Runner(ledger, Recorder(), reporters=[display]).run(make_tasks(5, cost=0.04))
    assert "resuming: 3 of 5 finished earlier, $0.12 spent earlier" in screen.getvalue()
