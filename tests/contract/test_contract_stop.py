"""The contract, Ctrl-C: the same on every kind of run (see run_kinds).

- Ctrl-C ends the run soon with exit 2 and sends nothing more: no task attempt starts after it, no paid
  call reaches the provider after it, and a local model finishes at most what it held (what it was
  drawing, and the images it was still writing); a rerun then finishes the job.
- Ctrl-C while a local model's workers load makes no image.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from run_kinds import KINDS, Run, in_ledger, running_tasks


# serial: what a local model may still finish is counted from outside while its workers run on, which
# other tests' load skews
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), pytest.mark.serial]
LOCAL_MODELS = ["styles-flux2", "instructions-local", "instructions-ray", "trainset-local"]


def start(run: Run, stderr: Path) -> subprocess.Popen:
    return subprocess.Popen(run.command, env=run.env, stdout=subprocess.DEVNULL, stderr=stderr.open("w"), text=True)


def wait_for(condition, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, "the command ended before the moment to interrupt it"
        assert time.monotonic() < deadline, "the moment to interrupt never came"
        time.sleep(0.005)


def interrupt(process: subprocess.Popen, run: Run, stderr: Path) -> tuple[int, int, int]:
    """Ctrl-C; once the command has said it is stopping, freeze it and let the provider read what was
    sent. What it had made then, the task attempts it had started, and the paid calls it may still
    send: those sent, and those of the tasks it had started. (Before the command reads the signal, a
    task may still start: an answer it had already received can free a place first.)"""
    process.send_signal(signal.SIGINT)
    while "interrupt:" not in stderr.read_text() and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signal.SIGSTOP)
    run.settle()
    made, started = run.images(), in_ledger(run.ledger_root, "attempts")
    paid = run.paid_calls() + run.calls_per_task * running_tasks(run.ledger_root)
    process.send_signal(signal.SIGCONT)
    return made, started, paid


@pytest.mark.parametrize("kind", list(KINDS))
def test_ctrl_c_sends_nothing_more_and_a_rerun_finishes(kind, tmp_path, klein):
    with KINDS[kind](tmp_path, klein) as run:
        log = tmp_path / "stderr.txt"
        process = start(run, log)
        wait_for(lambda: run.images() >= 1, process)
        made, started, paid = interrupt(process, run, log)
        process.wait(timeout=60)
        stderr = log.read_text()
        assert process.returncode == 2, stderr
        assert "interrupt: finishing tasks in flight" in stderr and "rerun the same command to continue" in stderr
        run.settle()
        assert in_ledger(run.ledger_root, "attempts") == started, "a task attempt started after Ctrl-C"
        assert run.paid_calls() <= paid, "a task started after Ctrl-C"
        if run.drawing is not None:
            assert run.images() - made <= run.drawing, f"{run.images() - made} images made after Ctrl-C"

        rerun = subprocess.run(run.command, env=run.env, capture_output=True, text=True, timeout=240)
        assert rerun.returncode == 0, rerun.stderr
        assert run.images() == run.expected


@pytest.mark.parametrize("kind", LOCAL_MODELS)
def test_ctrl_c_while_the_model_loads_makes_no_image(kind, tmp_path, klein):
    with KINDS[kind](tmp_path, klein) as run:
        run.env.pop("RAY_ADDRESS", None)  # on Ray, the command starts a Ray of its own: Ctrl-C as it starts
        log = tmp_path / "stderr.txt"
        process = start(run, log)
        wait_for(lambda: "loading the model" in log.read_text(), process)
        assert run.images() == 0, "an image before the model loaded"
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        stderr = log.read_text()
        assert process.returncode == 2, stderr
        assert run.images() == 0, stderr
