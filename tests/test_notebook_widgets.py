"""Notebook widgets with a real kernel: clicks sent as JupyterLab sends them, on the main shell and on a subshell.

JupyterLab 4.4+ delivers widget messages on a kernel subshell, where the handler runs on another
thread; Resume must still wake the paused job with no other traffic to the kernel.
"""

from __future__ import annotations

import time

import pytest
from conftest import tasks_done, wait_for_tasks_done
from kernel_helpers import started_kernel, wait_until

SETUP = """
import asyncio
from imggen.engine.job import run_job
from imggen.engine.runner import RunnerConfig
from imggen.engine.tasks import Outcome, Task
from imggen.notebook import run_in_notebook

calls = []

async def work(task):
    calls.append(task.key)
    await asyncio.sleep(0.02)
    return Outcome()

tasks = [Task(f"t{i:04d}", {}) for i in range(3000)]
job = await run_in_notebook(
    lambda control, reporter: run_job(OUT, tasks, work, config=RunnerConfig(concurrency=2),
                                      control=control, reporters=[reporter]),
    title="test", interactive=True,
)
"""


@pytest.fixture
def kernel():
    with started_kernel() as started:
        yield started


@pytest.mark.slow
@pytest.mark.parametrize("route", ["main", "subshell"])
def test_pause_resume_stop_clicks_reach_the_running_job(kernel, tmp_path, route):
    root = tmp_path / "job"
    kernel.run(SETUP.replace("OUT", repr(str(root))))
    # 3000 calls of 20 ms, two at a time, take half a minute: the cell has returned while the job runs
    assert kernel.value("job.summary is None and len(calls) < 3000"), "the interactive cell must return first"
    if route == "subshell":
        kernel.open_subshell()
    wait_until(kernel, "len(calls) >= 10")

    kernel.click("pause")
    wait_until(kernel, "job.state == 'paused' and job.progress.running == 0")  # calls in flight finish
    paused_at = kernel.value("len(calls)")
    time.sleep(1.0)
    assert kernel.value("len(calls)") == paused_at, "a task started while paused"
    assert kernel.value("job.status.value") == "paused"

    done_when_paused = tasks_done(root)
    kernel.click("resume")
    # No other message to the kernel (the ledger file is read instead): the click alone must wake the job.
    wait_for_tasks_done(root, done_when_paused + 10, timeout_s=30)
    assert kernel.value("len(calls)") > paused_at + 10

    kernel.click("stop")
    wait_until(kernel, "job.state == 'stopped'")
    done = kernel.value("job.summary.progress.done")
    assert 0 < done < 3000
    assert kernel.value("job.status.value") == "stopped"


@pytest.mark.slow
def test_headless_run_blocks_the_cell_and_prints_progress(kernel, tmp_path):
    code = SETUP.replace("OUT", repr(str(tmp_path / "job"))).replace("interactive=True", "interactive=False")
    code = code.replace("range(3000)", "range(40)")
    output = kernel.run(code, timeout=60)
    assert "[test] finished: 40/40 done, 0 failed" in output
    assert kernel.value("job.state") == "finished"


def buttons(kernel) -> dict[str, bool]:
    """Which of Pause, Resume and Stop are enabled."""
    return {name: not kernel.value(f"job.{name}_button.disabled") for name in ("pause", "resume", "stop")}


@pytest.mark.slow
def test_buttons_follow_the_state_and_a_second_start_shows_the_running_job(kernel, tmp_path):
    kernel.run(SETUP.replace("OUT", repr(str(tmp_path / "job"))))
    wait_until(kernel, "len(calls) >= 10")
    assert buttons(kernel) == {"pause": True, "resume": False, "stop": True}
    kernel.click("pause")
    wait_until(kernel, "job.state == 'paused'")
    assert buttons(kernel) == {"pause": False, "resume": True, "stop": True}

    # Run All again while the job runs: the same job comes back, with one line saying so.
    kernel.run("first = job")
    said = kernel.run(SETUP.replace("OUT", repr(str(tmp_path / "job"))).replace("calls = []", ""))
    assert kernel.value("job is first")
    assert "still paused in this kernel" in said and said.count("\n") <= 3

    kernel.click("stop")
    wait_until(kernel, "job.state == 'stopped'")
    assert buttons(kernel) == {"pause": False, "resume": False, "stop": False}
    # Once it ended, the same cell starts a new run on the folder.
    kernel.run(SETUP.replace("OUT", repr(str(tmp_path / "job"))).replace("calls = []", ""))
    assert not kernel.value("job is first")
    wait_until(kernel, "job.state in ('running', 'finished')")
    kernel.run("job.stop()")
    wait_until(kernel, "job.state == 'stopped'")


@pytest.mark.slow
def test_a_last_cell_run_while_the_job_runs_shows_the_results_when_it_ends(kernel, tmp_path):
    kernel.run(SETUP.replace("OUT", repr(str(tmp_path / "job"))).replace("range(3000)", "range(100)"))
    # Run All: the last cell runs at once, while the job goes on in the background
    printed = kernel.run("from imggen.notebook import show_when_done\n"
                         "show_when_done(job, lambda job: print('ended:', job.summary.state, job.summary.progress.done))")
    assert kernel.value("job.summary is None") and "ended" not in printed
    wait_until(kernel, "job.summary is not None and bool(job.results_output.outputs)", timeout=30)
    assert kernel.value("job.results_output.outputs") == [{"output_type": "stream", "name": "stdout",
                                                            "text": "ended: finished 100\n"}]
    # run again after the end, it shows the results in the cell itself
    assert kernel.run("show_when_done(job, lambda job: print('again:', job.summary.state))") == "again: finished\n"
