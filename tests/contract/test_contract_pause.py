"""The contract, pause and resume: what the notebooks' Pause / Resume buttons do, the same on every kind
of run (see run_kinds). The command line has no pause, so the job runs as its notebook runs it: the
pipeline's Python API with a run control, the panel's buttons clicked from another thread
(``Run.in_a_notebook``, notebook_job.py). It is paused as soon as it has finished something (an image,
or a training set's grid), while most of the job is still to do.

- Pause holds within what is being drawn: after it no task starts (nor a sub-task, such as a training
  set's grid, nor a retry), a local model finishes at most what it held (workers x batch, and what it was still writing), other
  runs at most the tasks they had started (one image each), and no paid call reaches the provider beyond
  those of the tasks in flight at the pause.
- Pause ends no process of the run: its model workers stay up, their models loaded.
- The run is held, not slow: once at rest (nothing made, sent or started, the provider has answered, and
  its processes are idle: nothing is being drawn), nothing more is made, sent or started while it stays paused.
- Resume continues: the same run ends with every image of the job, each whole, and nothing paid twice.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from run_kinds import KINDS, Run, in_ledger, running_tasks

from imggen.engine.paid_calls import OPEN
from imggen.storage.atomic import is_valid_image

# serial: what a local model may still finish is counted from outside while its workers run on, which
# other tests' load skews (a worker's last image still being saved is counted as made after the stop)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), pytest.mark.serial]
QUIET_S = 1.0  # a paused run is at rest once nothing was made, sent or started for this long...
IDLE_CPU_S = 0.25  # ...while its processes used at most this much CPU time (a model drawing uses the CPU)
HOLD_S = 1.5  # then it stays paused this long, and nothing more may come


@dataclass(frozen=True)
class AtThePause:
    images: int  # images on disk
    started: int  # task attempts the ledger had started, sub-tasks included
    running: int  # tasks the ledger had running (started, not finished)
    may_pay: int  # paid calls the provider may receive in all: those received, and those of the running tasks
    processes: frozenset[int]  # the run's processes: the job and its model workers


@dataclass(frozen=True)
class Seen:
    images: int
    paid_calls: int
    started: int  # task attempts the ledger has started, sub-tasks included


class NotebookRun:
    """The kind's job run as its notebook runs it, in a child process (a session of its own)."""

    def __init__(self, run: Run, folder: Path) -> None:
        self.run = run
        self.out, self.err = folder / "notebook.out", folder / "notebook.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen(run.in_a_notebook, env=run.env, stdin=subprocess.PIPE, stdout=out,
                                            stderr=err, text=True, start_new_session=True)

    def said(self) -> str:
        return f"{self.out.read_text()}{self.err.read_text()[-3000:]}"

    def wait_for(self, condition, what: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert self.process.poll() is None, f"the run ended before {what}: {self.said()}"
            assert time.monotonic() < deadline, f"never {what}: {self.said()}"
            time.sleep(0.005)

    def click(self, button: str) -> None:
        """Click ``button`` of the panel; returns once the click has returned (the control has it)."""
        self.process.stdin.write(f"{button}\n")
        self.process.stdin.flush()
        self.wait_for(lambda: f"clicked: {button}" in self.out.read_text(), f"a click on {button} returned", 30)

    def processes(self) -> dict[int, float]:
        """The processes of its session (the job and its model workers), each with the CPU time it used."""
        found = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command's name
            except (OSError, IndexError):  # ended meanwhile
                continue
            if int(fields[3]) == self.process.pid and fields[0] != "Z":  # its session, not a zombie
                found[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return found

    def cpu_s(self) -> float:
        return sum(self.processes().values())

    def still_up(self, at_the_pause: AtThePause) -> None:
        ended = at_the_pause.processes - set(self.processes())
        assert not ended, f"{len(ended)} of the run's processes ended while paused (a model worker?): {self.said()}"

    def end(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # the child and its workers: its own session
            self.process.wait()
        self.process.stdin.close()


def seen(run: Run) -> Seen:
    return Seen(run.images(), run.paid_calls(), in_ledger(run.ledger_root, "attempts"))


def finished_something(run: Run) -> bool:
    return run.images() >= 1 or in_ledger(run.ledger_root, "status = 'done'") >= 1


def pause(job: NotebookRun) -> AtThePause:
    """Click Pause; once the control has it, freeze the process and let the provider read what was sent
    (as test_contract_stop does after Ctrl-C): what was made and started then, and the paid calls it may
    still send."""
    run = job.run
    job.click("pause")
    job.process.send_signal(signal.SIGSTOP)
    try:
        run.settle()
        running = running_tasks(run.ledger_root)
        return AtThePause(run.images(), in_ledger(run.ledger_root, "attempts"), running,
                          run.paid_calls() + run.calls_per_task * running, frozenset(job.processes()))
    finally:
        job.process.send_signal(signal.SIGCONT)


def at_rest(job: NotebookRun, timeout_s: float = 60) -> Seen:
    """Wait until the paused run has made, sent and started nothing for QUIET_S while its processes were
    idle, and the provider has answered what it was sent; what it has made, been paid and started then."""
    run = job.run
    deadline = time.monotonic() + timeout_s
    last, since, cpu = seen(run), time.monotonic(), job.cpu_s()
    while True:
        assert job.process.poll() is None, f"the run ended while paused: {job.said()}"
        assert time.monotonic() < deadline, f"the paused run never came to rest ({last}): {job.said()}"
        now = seen(run)
        if now != last:
            last, since, cpu = now, time.monotonic(), job.cpu_s()
        elif time.monotonic() - since >= QUIET_S:
            if job.cpu_s() - cpu > IDLE_CPU_S:  # still busy (drawing): watch the next QUIET_S
                since, cpu = time.monotonic(), job.cpu_s()
                continue
            run.settle()
            if seen(run) == last:
                return last
        time.sleep(0.05)


@pytest.mark.parametrize("kind", list(KINDS))
def test_pause_holds_within_what_is_drawn_and_resume_finishes(kind, tmp_path, klein):
    with KINDS[kind](tmp_path, klein) as run:
        job = NotebookRun(run, tmp_path)
        try:
            job.wait_for(lambda: finished_something(run), "it finished an image or a grid")
            paused = pause(job)
            rest = at_rest(job)
            job.still_up(paused)
            assert rest.images < run.expected, "the job was done before it could be held: pause it earlier"
            assert rest.started == paused.started, \
                f"{rest.started - paused.started} task attempts started after the pause ({paused}, {rest})"
            may_finish = run.drawing if run.drawing is not None else paused.running
            assert rest.images - paused.images <= may_finish, \
                f"{rest.images - paused.images} images made after the pause ({paused}, may finish {may_finish})"
            assert rest.paid_calls <= paused.may_pay, \
                f"a task started after the pause: {rest.paid_calls} paid calls ({paused})"

            time.sleep(HOLD_S)
            run.settle()
            assert job.process.poll() is None, f"the run ended while paused: {job.said()}"
            assert seen(run) == rest, f"made, sent or started while paused: {seen(run)} after {rest}"
            job.still_up(paused)

            job.click("resume")
            try:
                job.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the run did not end within 120 s of Resume ({seen(run)}): {job.said()}")
        finally:
            job.end()
        run.settle()
        assert job.process.returncode == 0, job.said()
        assert "ended: finished" in job.out.read_text(), job.said()
        images = run.image_files()
        assert len(images) == run.expected, job.said()
        assert all(is_valid_image(path) for path in images), [str(p) for p in images if not is_valid_image(p)]
        if run.recorded_calls is not None:  # paid calls recorded by task key: none created twice
            recorded = run.recorded_calls()
            keys = collections.Counter(key for key, _ in recorded)
            assert not [key for key, n in keys.items() if n > 1], f"created again for a recorded key: {keys}"
            assert OPEN not in dict(recorded).values(), "a call is left open"
            assert run.paid_calls() <= len(keys), f"{run.paid_calls()} paid calls for {len(keys)} keys"
        else:  # one paid call per image (a local model: none)
            assert run.paid_calls() <= run.expected, f"{run.paid_calls()} paid calls for {run.expected} images"
