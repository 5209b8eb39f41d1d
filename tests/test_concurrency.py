"""Tasks in flight with ``concurrency="auto"``: rate x latency, a slow start, halved on a 429, a ceiling."""

from __future__ import annotations

import io
import math

import pytest
from rich.console import Console

from imggen.engine.concurrency import START, InFlightTarget
from imggen.engine.errors import ErrorKind, TaskError
from imggen.engine.events import Progress, RunFinished, RunStarted, TaskFinished
from imggen.engine.reporters import RichReporter
from imggen.engine.ledger import Ledger
from imggen.engine.runner import RateLimit, Runner, RunnerConfig
from imggen.pipelines.styles.cli import build_parser

from conftest import Recorder, make_tasks


def settled(target: InFlightTarget, latency_s: float, rate_per_s: float | None, answers: int = 200) -> int:
    for _ in range(answers):
        target.succeeded(latency_s, rate_per_s)
    return target.value


def test_the_target_follows_littles_law_from_a_small_start():
    target = InFlightTarget()
    assert target.value == START
    assert settled(target, 1.0, 10.0) == 21  # 10/s x 1 s, twice over (a queue at the limiter), plus one
    assert settled(InFlightTarget(), 5.0, 10.0) == 101  # five times the latency, five times in flight
    assert settled(InFlightTarget(ceiling=32), 5.0, 10.0) == 32  # never past the ceiling


def test_with_a_known_limit_the_first_answer_sets_the_target():
    target = InFlightTarget()
    target.succeeded(20.0, 173 / 60)  # a GPT image at 20 s, 173 a minute: the limiter spaces the starts
    assert target.value == math.ceil(173 / 60 * 20 * 2 + 1)


def test_without_a_limit_the_probe_grows_by_one_per_answer():
    target = InFlightTarget()
    values = [target.value]
    for _ in range(20):
        target.succeeded(1.0, None)
        values.append(target.value)
    assert values[:3] == [START, START + 1, START + 2] and values[-1] == START + 20


def test_a_429_halves_it_and_growth_is_then_slow():
    target = InFlightTarget()
    before = settled(target, 1.0, None, answers=40)  # no limit known: the probe alone
    target.rate_limited()
    assert target.value == pytest.approx(before / 2, abs=1)
    after_one_round = settled(target, 1.0, None, answers=target.value)
    assert after_one_round <= before // 2 + 2  # about one more per round trip


def test_a_pinned_number_never_moves():
    target = InFlightTarget(6)
    settled(target, 5.0, 100.0)
    target.rate_limited()
    assert target.value == 6
    with pytest.raises(ValueError):
        InFlightTarget(0)
    with pytest.raises(ValueError):
        RunnerConfig(concurrency="many")


async def run(out, work, tasks, **config):
    targets: list[int] = []

    def record(event):
        if isinstance(event, TaskFinished):
            targets.append(event.progress.in_flight_target)

    with Ledger(out) as ledger:
        summary = await Runner(ledger, work, config=RunnerConfig(**config), reporters=[record]).run(tasks)
    return summary, targets


@pytest.mark.serial
@pytest.mark.clock  # the starts are timed against the clock
@pytest.mark.parametrize("delay", [0.1, 0.4])
async def test_in_flight_grows_with_latency_to_use_the_limit(out, delay):
    work = Recorder(delay=delay)
    summary, _ = await run(out, work, make_tasks(90), rate_limit=RateLimit(30, 1.0))
    assert summary.progress.done == 90
    # Little's law: 30/s x the latency is in flight (3 and 12); the target allows twice that, plus one
    assert 30 * delay - 1 <= work.max_running <= 30 * delay * 2 + 2
    # ...which is what it takes to keep up with the limit: 90 starts at 30/s in 3 s, plus the ramp
    # from a small start (8 in flight would take 4.5 s at the longer latency)
    assert work.starts[-1] - work.starts[0] < 3.6


async def test_a_429_shrinks_what_is_in_flight(out):
    def script(task, call):
        if task.key == "t040" and call == 1:
            raise TaskError(ErrorKind.RATE_LIMITED, "slow_down", retry_after=0.05)

    work = Recorder(delay=0.05, script=script)
    summary, targets = await run(out, work, make_tasks(80))
    assert summary.progress.done == 80 and summary.progress.rate_limit_hits == 1
    peak = max(targets[:40])
    assert peak > START and min(targets[40:]) <= peak // 2 + 1


async def test_a_pinned_concurrency_is_never_exceeded_even_with_a_high_limit(out):
    work = Recorder(delay=0.2)
    summary, targets = await run(out, work, make_tasks(30), concurrency=3, rate_limit=RateLimit(1000, 1.0))
    assert summary.progress.done == 30 and work.max_running == 3 and set(targets) == {3}


def test_the_displays_show_the_target_and_the_limit_in_use():
    progress = Progress(total=10, running=3, in_flight_target=12, limit_per_min=173.0)
    assert progress.pace == "in flight 3/12, limit 173/min"
    assert Progress(total=1).pace == "in flight 0"
    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    reporter = RichReporter("styles", console)
    reporter(RunStarted(progress))
    reporter(RunFinished(progress.evolve(state="finished")))
    assert "in flight 3/12, limit 173/min" in console.file.getvalue()


@pytest.mark.parametrize(("text", "value"), [("auto", "auto"), ("12", 12)])
def test_the_styles_cli_takes_auto_or_a_number(text, value):
    args = build_parser().parse_args(["--prompts", "p.json", "--output", "o", "--concurrency", text])
    assert args.concurrency == value
    assert build_parser().parse_args(["--prompts", "p.json", "--output", "o"]).concurrency == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--prompts", "p.json", "--output", "o", "--concurrency", "many"])
