"""The worker pool on spawned processes: workers pull work as they free up, a dead worker's items
are retried elsewhere and the worker replaced, a model that cannot load stops the run, and items
that share conditioning images are batched together."""

from __future__ import annotations

import asyncio
import collections
import subprocess
import sys
from pathlib import Path

import pytest

from imggen.distributed.dispatch import Dispatcher
from imggen.distributed.pool import WorkerDied, WorkerPool
from imggen.distributed.processes import local_pool, threads_per_worker, worker_devices
from imggen.engine.errors import ErrorKind, TaskError, Withdrawn

from instructions_fixtures import ScriptedHandler

pytestmark = pytest.mark.timeout(120)


async def test_a_faster_worker_takes_more_items_from_the_shared_queue(tmp_path):
    handler = ScriptedHandler(delays={"slow": 0.25, "fast": 0.01}, loaded_marks=str(tmp_path))
    async with local_pool(handler, ["slow", "fast"]) as pool:
        # The first item starts both workers; the race is measured once both have loaded, so that
        # a busy machine starting the fast one seconds after the slow one cannot decide it.
        first = asyncio.ensure_future(pool.submit("first"))
        while not all((tmp_path / device).exists() for device in ("slow", "fast")):
            await asyncio.sleep(0.05)  # the module's timeout bounds this wait
        await first
        results = await asyncio.gather(*(pool.submit(i) for i in range(40)))
    assert [r["payload"] for r in results] == list(range(40))
    by_device = collections.Counter(r["device"] for r in results)
    assert by_device["fast"] > 3 * by_device["slow"], by_device


async def test_withdrawing_gives_back_what_no_worker_has_begun_and_the_worker_skips_it(tmp_path):
    drawn = tmp_path / "drawn.log"
    async with local_pool(ScriptedHandler(delays={"cpu": 0.5}, drawn_log=str(drawn)), ["cpu"]) as pool:
        items = [asyncio.ensure_future(pool.submit(index)) for index in range(4)]
        while not drawn.exists():  # the first batch is being drawn, the second waits in the worker's inbox
            await asyncio.sleep(0.01)
        pool.withdraw_waiting()  # what the runner calls on Pause and Stop
        results = await asyncio.gather(*items, return_exceptions=True)
        await asyncio.sleep(1.0)  # time for the worker to draw the inbox batch, had it not skipped it
        assert results[0]["payload"] == 0
        assert all(isinstance(result, Withdrawn) for result in results[1:]), results
        assert drawn.read_text().split() == ["0"]
        later = await pool.submit("after a resume")
    assert later["payload"] == "after a resume"


def test_a_withdrawal_of_a_job_the_worker_already_ran_leaves_it_waiting_for_work():
    # On a pause the parent may withdraw a batch the worker has already taken (its answer had not
    # arrived yet); the worker then reads the withdrawal alone and must go on waiting, not stop.
    import multiprocessing
    import threading

    from imggen.distributed.processes import _read_messages

    parent, worker = multiprocessing.Pipe()
    parent.send(("withdraw", 7))
    later = threading.Timer(0.2, lambda: parent.send(("run", 8, ["payload"])))
    later.start()
    inbox, withdrawn = collections.deque(), set()
    _read_messages(worker, inbox, withdrawn)
    later.join()
    assert list(inbox) == [("run", 8, ["payload"])] and withdrawn == {7}


async def test_a_dead_worker_turns_its_item_into_a_transient_error_and_is_replaced(tmp_path):
    handler = ScriptedHandler(crash_marker=str(tmp_path / "crashed"))
    async with local_pool(handler, ["cpu"], max_restarts=1) as pool:
        first = await pool.submit("before")
        with pytest.raises(TaskError) as died:
            await pool.submit("crash")
        assert died.value.kind is ErrorKind.TRANSIENT
        assert "died" in died.value.message and "exited with code 3" in died.value.message
        again = await pool.submit("crash")  # what the runner's retry does: it now succeeds
    assert again["payload"] == "crash" and again["pid"] != first["pid"]


async def test_with_no_worker_left_every_item_fails_fatally_with_the_reason():
    async with local_pool(ScriptedHandler(load_error="checkpoint is broken"), ["cpu", "cpu"]) as pool:
        outcomes = await asyncio.gather(pool.submit(1), pool.submit(2), return_exceptions=True)
        late = await asyncio.gather(pool.submit(3), return_exceptions=True)
    for error in outcomes + late:
        assert isinstance(error, TaskError) and error.kind is ErrorKind.FATAL
        assert "RuntimeError: checkpoint is broken" in error.message


async def test_batches_take_only_items_of_the_same_group_up_to_the_batch_size():
    dispatcher = Dispatcher(batch_size=3)
    for index, group in enumerate("aabaaab"):
        dispatcher.submit(index, group)
    batches = [[item.payload for item in await dispatcher.next_batch()] for _ in range(3)]
    assert batches == [[0, 1, 3], [2, 6], [4, 5]]


def test_a_worker_killed_while_it_loads_leaves_no_leaked_semaphore_warning(tmp_path):
    # A progress bar takes tqdm's lock; its default is a process lock, whose semaphore a killed worker
    # never gives back, and Python's resource tracker then warns on the user's terminal at exit.
    script = f"""
import asyncio, pathlib, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from imggen.distributed.processes import local_pool
from instructions_fixtures import ProgressBarLoading

async def main():
    mark = pathlib.Path({str(tmp_path / "loaded")!r})
    async with local_pool(ProgressBarLoading(str(mark)), ["cpu"]) as pool:
        item = asyncio.ensure_future(pool.submit("x"))  # starts the worker
        while not mark.exists():
            await asyncio.sleep(0.05)
        item.cancel()
    print("closed")  # the pool killed the worker, still loading

asyncio.run(main())
"""
    ended = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
    assert ended.returncode == 0 and ended.stdout.strip() == "closed", ended.stderr
    assert "leaked" not in ended.stderr, ended.stderr


def test_devices_one_worker_per_visible_gpu_or_n_cpu_workers(monkeypatch):
    import imggen.distributed.processes as processes

    assert worker_devices("cpu", 3) == ["cpu"] * 3
    assert worker_devices("cpu", -1) == ["cpu"]
    assert worker_devices("cuda:1", -1) == ["cuda:1"]
    monkeypatch.setattr(processes, "_cuda_count", lambda: 4)  # what torch reports under CUDA_VISIBLE_DEVICES
    assert worker_devices(None, -1) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert worker_devices("cuda", 2) == ["cuda:0", "cuda:1"]
    with pytest.raises(RuntimeError, match="only 4 GPU"):
        worker_devices("cuda", 5)
    monkeypatch.setattr(processes, "_cuda_count", lambda: 0)
    assert worker_devices(None, 2) == ["cpu", "cpu"]
    monkeypatch.setattr(processes.os, "cpu_count", lambda: 8)
    assert threads_per_worker(["cpu", "cpu"]) == 4 and threads_per_worker(["cuda:0"]) is None


class GatedWorker:
    """A worker in this process whose model is loaded when the test says so."""

    def __init__(self, index: int, loaded: asyncio.Event, fails: bool = False) -> None:
        self.name, self._loaded, self._fails = f"worker {index}", loaded, fails

    async def ready(self) -> None:
        await self._loaded.wait()
        if self._fails:
            raise WorkerDied("out of memory", loading=True)

    async def run(self, payloads: list) -> list:
        return [("ok", payload) for payload in payloads]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("second_fails", [False, True])
async def test_the_pool_says_when_the_first_worker_is_ready_and_when_all_are(second_fails):
    gates = [asyncio.Event(), asyncio.Event()]
    said: list[str] = []
    launch = lambda index: GatedWorker(index, gates[index], fails=second_fails and index == 1)
    async with WorkerPool(launch, 2, describe="worker process", on_status=said.append) as pool:
        first = asyncio.ensure_future(pool.submit("a"))
        await asyncio.sleep(0)
        assert said == ["loading the model on 2 worker processes…"]
        gates[0].set()
        assert await first == "a"  # images start with the first worker ready
        assert len(said) == 2 and said[1].startswith("1 of 2 worker processes ready in ")
        assert said[1].endswith(" s; generating while the others load")
        gates[1].set()
        assert await pool.submit("b") == "b"
        while len(said) < 3:  # the second worker's slot runs on the next turns of the loop
            await asyncio.sleep(0)
    last = "1 of 2 worker processes ready in " if second_fails else "2 worker processes ready in "
    assert len(said) == 3 and said[2].startswith(last), said


async def test_workers_still_loading_long_after_the_first_are_said_once_with_why(monkeypatch):
    monkeypatch.setattr(WorkerPool, "STILL_LOADING_NOTICE_S", 0.2)
    gates = [asyncio.Event(), asyncio.Event(), asyncio.Event()]
    said: list[str] = []
    async with WorkerPool(lambda index: GatedWorker(index, gates[index]), 3, describe="Ray actor",
                          on_status=said.append, slow_load_hint="no GPU free for it") as pool:
        gates[0].set()
        assert await pool.submit("a") == "a"
        gates[1].set()
        await asyncio.sleep(0.5)  # the third cannot be placed
        notices = [line for line in said if "still not ready" in line]
        assert len(notices) == 1 and notices[0].startswith("1 of 3 Ray actors still not ready after ")
        assert notices[0].endswith(" s: no GPU free for it")
        gates[2].set()
