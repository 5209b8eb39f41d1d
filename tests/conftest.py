"""Shared test helpers and environment: a recording work function, small image files, the tiny checkpoint."""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image

from imggen.backends.tiny_flux2 import build_tiny_checkpoint
from imggen.engine.ledger import LEDGER_NAME
from imggen.engine.tasks import Outcome, Task

# The tests run four processes on two cores. OpenMP threads of a CPU model worker that spin while they
# wait burn the cores the other tests need: waiting asleep took the parallel part from 1,173 s of CPU
# to 821 s. Set here, before any test imports torch, so every run a test starts inherits it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def png_bytes(color: tuple[int, int, int] = (200, 30, 30), size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


class Recorder:
    """A work function that records when each call starts and ends and how many run at once."""

    def __init__(self, delay: float = 0.0, script=None) -> None:
        self.delay = delay
        self.script = script  # optional callable(task, call_number) that may raise
        self.calls: list[str] = []
        self.starts: list[float] = []
        self.running = 0
        self.max_running = 0

    async def __call__(self, task: Task) -> Outcome:
        self.calls.append(task.key)
        self.starts.append(time.monotonic())
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.script is not None:
                self.script(task, self.calls.count(task.key))
            return Outcome(cost=task.cost)
        finally:
            self.running -= 1


def tasks_done(root: Path) -> int:
    """How many tasks the ledger in ``root`` holds as done, read from outside the run (0 before it exists)."""
    try:
        with closing(sqlite3.connect(f"{(root / LEDGER_NAME).as_uri()}?mode=ro", uri=True)) as db:
            return db.execute("SELECT COUNT(*) FROM tasks WHERE status = 'done'").fetchone()[0]
    except sqlite3.Error:
        return 0  # not created yet


def wait_for_tasks_done(root: Path, count: int, *, running=lambda: True, timeout_s: float = 60.0) -> None:
    """Wait, however slow the machine, until the run writing ``root`` has finished ``count`` tasks.

    It only reads the ledger file: nothing is sent to the process that runs the job."""
    deadline = time.monotonic() + timeout_s
    while tasks_done(root) < count:
        assert running(), f"the run ended before {count} tasks were done"
        assert time.monotonic() < deadline, f"fewer than {count} tasks done within {timeout_s:.0f} s"
        time.sleep(0.05)


def make_tasks(n: int, cost: float = 0.0) -> list[Task]:
    return [Task(f"t{i:03d}", {"i": i}, cost=cost) for i in range(n)]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


@pytest.fixture(scope="session")
def klein(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The tiny FLUX.2 klein checkpoint (random weights, built offline), shared by every test that
    only reads it. It is built once per pytest run: the first of the xdist processes that needs it
    builds it (4 to 5 s of CPU) while the others wait on a lock, then all read the same folder."""
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # the folder of this run, above each process's
    path = shared / "flux2-klein-tiny"
    with open(shared / "flux2-klein-tiny.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_dir():  # the build renames a finished checkpoint into place
            build_tiny_checkpoint(path)
    return path


def is_the_ray_kind(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("kind") == "instructions-ray"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The contract battery's Ray kind runs a Ray cluster beside its job: it runs with the serial tests."""
    for item in items:
        if is_the_ray_kind(item):
            item.add_marker(pytest.mark.serial)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory) -> Iterator[str]:
    """A Ray head node (see ray_head), started once per test process for the jobs that join one: its address."""
    from ray_head import ray_head

    with ray_head(tmp_path_factory.mktemp("ray") / "head.log") as address:
        yield address


@pytest.fixture(autouse=True)
def joins_the_ray_cluster(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The contract battery's Ray kind joins the tests' Ray cluster as a job on a cluster does:
    RAY_ADDRESS, and a token (run_kinds.instructions_ray)."""
    if is_the_ray_kind(request.node):
        from ray_head import TOKEN_AUTH

        monkeypatch.setenv("RAY_ADDRESS", request.getfixturevalue("ray_cluster"))
        for name, value in TOKEN_AUTH.items():
            monkeypatch.setenv(name, value)
