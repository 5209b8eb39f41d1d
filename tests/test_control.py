"""Pause, resume and stop, called from other threads the way notebook widget handlers call them."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from imggen.engine.control import RunControl
from imggen.engine.ledger import Ledger
from imggen.engine.runner import Runner, RunnerConfig

from conftest import Recorder, make_tasks, wait_for_tasks_done


def from_thread(action) -> None:
    """Call ``action`` on another thread and wait for it, as a kernel subshell would."""
    thread = threading.Thread(target=action)
    thread.start()
    thread.join()


async def wait_for(condition, timeout=5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("queue", ["no withdraw_waiting", "withdraw_waiting None"])
async def test_pause_stops_new_starts_until_resumed_from_another_thread(out, queue):
    work = Recorder(delay=0.05)
    if queue == "withdraw_waiting None":  # as the style work sets it when its drawer keeps no queue
        work.withdraw_waiting = None
    control = RunControl()
    states: list[str] = []
    with Ledger(out) as ledger:
        runner = Runner(ledger, work, config=RunnerConfig(concurrency=2), control=control,
                        reporters=[lambda event: states.append(event.progress.state)])
        job = asyncio.ensure_future(runner.run(make_tasks(30)))
        await wait_for(lambda: len(work.calls) >= 4)
        from_thread(control.pause)
        await asyncio.sleep(0.1)  # tasks in flight finish
        paused_at = len(work.calls)
        assert work.running == 0
        await asyncio.sleep(0.3)
        assert len(work.calls) == paused_at, "a task started while paused"
        assert states[-1] == "paused", "the displays are told"
        from_thread(control.resume)
        # Nothing else touches the loop: the resume itself must wake the paused workers.
        summary = await asyncio.wait_for(job, timeout=5)
    assert summary.state == "finished" and summary.progress.done == 30


async def test_graceful_stop_lets_in_flight_tasks_finish(out):
    work = Recorder(delay=0.1)
    control = RunControl()
    with Ledger(out) as ledger:
        runner = Runner(ledger, work, config=RunnerConfig(concurrency=3), control=control)
        job = asyncio.ensure_future(runner.run(make_tasks(20)))
        await wait_for(lambda: len(work.calls) >= 3)
        from_thread(control.stop)
        summary = await asyncio.wait_for(job, timeout=5)
        counts = ledger.counts()
    assert summary.state == "stopped"
    assert counts["done"] == len(work.calls) and counts["running"] == 0
    assert counts["pending"] == 20 - len(work.calls)


async def test_immediate_stop_cancels_in_flight_tasks_back_to_pending(out):
    work = Recorder(delay=5.0)
    control = RunControl()
    with Ledger(out) as ledger:
        runner = Runner(ledger, work, config=RunnerConfig(concurrency=3), control=control)
        job = asyncio.ensure_future(runner.run(make_tasks(10)))
        await wait_for(lambda: len(work.calls) == 3)
        began = time.monotonic()
        from_thread(lambda: control.stop(immediate=True))
        summary = await asyncio.wait_for(job, timeout=5)
        counts = ledger.counts()
    assert time.monotonic() - began < 1.0
    assert summary.state == "stopped"
    assert counts == {"pending": 10, "running": 0, "done": 0, "failed": 0}


async def test_control_works_when_called_before_the_run_starts(out):
    control = RunControl()
    control.stop()
    work = Recorder()
    with Ledger(out) as ledger:
        summary = await Runner(ledger, work, control=control).run(make_tasks(5))
    assert summary.state == "stopped" and work.calls == []


async def test_a_stop_cuts_a_hold_short_from_another_thread():
    control = RunControl()
    control.bind(asyncio.get_running_loop(), on_immediate_stop=lambda: None, on_change=lambda state: None)
    assert await control.sleep(0.01) is True
    sleeper = asyncio.ensure_future(control.sleep(30))
    await asyncio.sleep(0.05)
    began = time.monotonic()
    from_thread(control.stop)
    assert await asyncio.wait_for(sleeper, 2) is False
    assert time.monotonic() - began < 0.5
    assert await control.sleep(5) is False, "once stopping, no hold is waited out"


async def stopped_within(runner_job, control, seconds: float) -> float:
    """Stop from another thread; return how long the run took to end."""
    began = time.monotonic()
    from_thread(control.stop)
    summary = await asyncio.wait_for(runner_job, timeout=10)
    assert summary.state == "stopped"
    return time.monotonic() - began


async def test_a_stop_with_nothing_in_flight_ends_the_run_at_once(out):
    """A rate-limit hold, a backoff and the limiter's pacing are all cut short by Stop."""
    from imggen.engine.errors import ErrorKind, TaskError
    from imggen.engine.runner import RateLimit

    def refuse(task, call):
        kind = ErrorKind.RATE_LIMITED if task.key.endswith("0") else ErrorKind.TRANSIENT
        raise TaskError(kind, "try later", retry_after=30.0)

    for config in (RunnerConfig(concurrency=2, backoff_base_s=30.0), RunnerConfig(concurrency=4, rate_limit=RateLimit(2, 60))):
        control = RunControl()
        work = Recorder(script=refuse) if config.rate_limit is None else Recorder()
        with Ledger(out) as ledger:
            job = asyncio.ensure_future(Runner(ledger, work, config=config, control=control).run(make_tasks(8)))
            await wait_for(lambda: len(work.calls) >= 1)
            await asyncio.sleep(0.1)
            assert work.running == 0
            assert await stopped_within(job, control, 1.0) < 1.0
            assert ledger.counts()["running"] == 0


async def test_a_paused_run_whose_last_tasks_finish_ends_without_a_resume(out):
    work = Recorder(delay=0.2)
    control = RunControl()
    with Ledger(out) as ledger:
        job = asyncio.ensure_future(Runner(ledger, work, config=RunnerConfig(concurrency=3), control=control)
                                    .run(make_tasks(3)))
        await wait_for(lambda: work.running == 3)
        from_thread(control.pause)
        summary = await asyncio.wait_for(job, timeout=5)
    assert summary.state == "finished" and summary.progress.done == 3



def test_one_interrupt_is_said_once(tmp_path):
    """Ctrl-C's notice reaches the terminal once, through the run's events (not again through logging)."""
    import os
    import signal
    import subprocess
    import sys

    command = [sys.executable, "-m", "imggen.cli", "demo", "engine", "--output", str(tmp_path / "run"),
               "--count", "200", "--latency", "0.3"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "200"})
    # then the run's signal handlers are in place, however slow the machine was to start the command
    wait_for_tasks_done(tmp_path / "run", 1, running=lambda: process.poll() is None)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert err.count("interrupt: finishing tasks in flight") == 1, err
    assert "stopping run:" not in err

