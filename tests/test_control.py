"""Pause, resume and stop, called from other threads the way notebook widget handlers call them."""

from __future__ import annotations

import asyncio
import threading
import time

from imggen.engine.control import RunControl
from imggen.engine.ledger import Ledger
from imggen.engine.runner import Runner, RunnerConfig

from conftest import Recorder, make_tasks


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


async def test_pause_stops_new_starts_until_resumed_from_another_thread(out):
    work = Recorder(delay=0.05)
    control = RunControl()
    with Ledger(out) as ledger:
        runner = Runner(ledger, work, config=RunnerConfig(concurrency=2), control=control)
        job = asyncio.ensure_future(runner.run(make_tasks(30)))
        await wait_for(lambda: len(work.calls) >= 4)
        from_thread(control.pause)
        await asyncio.sleep(0.1)  # tasks in flight finish
        paused_at = len(work.calls)
        assert work.running == 0
        await asyncio.sleep(0.3)
        assert len(work.calls) == paused_at, "a task started while paused"
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
