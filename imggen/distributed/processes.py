"""One worker process per GPU on this machine (multiprocessing, spawn), each loading its model once.

``worker_devices("cuda", -1)`` lists ``cuda:0 .. cuda:N-1`` for the N GPUs visible to this process
(``CUDA_VISIBLE_DEVICES`` is respected: worker i uses ``cuda:i``, the i-th visible GPU). With
``device="cpu"``, ``num_gpus`` N gives N CPU workers (so the multi-worker path runs anywhere), and
each gets an equal share of the cores as torch threads so they do not oversubscribe the machine.

The parent talks to each worker over its own pipe and watches its process sentinel, both through
the event loop (no threads), so it knows exactly which batch a dead worker had in flight. Workers
ignore Ctrl-C (the parent decides when they stop) and, on Linux, are killed when the parent dies,
so a killed run never leaves a GPU held by an orphan.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import multiprocessing
import os
import signal
import sys
import threading
from typing import Any, Callable

from .pool import WorkerDied, WorkerPool
from .worker_side import HandlerFactory, call_handler, prepare_worker_environment

_CLOSE_TIMEOUT_S = 10.0


def worker_devices(device: str | None, num_gpus: int) -> list[str]:
    """The device of each worker: one per visible GPU (or ``num_gpus`` of them), or N CPU workers."""
    if device is None:
        device = "cuda" if _cuda_count() > 0 else "cpu"
    if device == "cpu":
        return ["cpu"] * max(num_gpus, 1)
    if device != "cuda":
        return [device]  # one explicit device, e.g. cuda:3 or mps
    available = _cuda_count()
    if available == 0:
        raise RuntimeError("--device cuda, but no GPU is visible (check CUDA_VISIBLE_DEVICES)")
    if num_gpus > available:
        raise RuntimeError(f"--num_gpus {num_gpus}, but only {available} GPU(s) are visible")
    count = available if num_gpus < 0 else num_gpus
    return [f"cuda:{index}" for index in range(count)]


def threads_per_worker(devices: list[str]) -> int | None:
    """An equal share of the cores for each CPU worker; None (torch's default) for GPU workers."""
    cpu_workers = sum(device == "cpu" for device in devices)
    return max(1, (os.cpu_count() or 1) // cpu_workers) if cpu_workers else None


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def local_pool(factory: HandlerFactory, devices: list[str], *, batch_size: int = 1,
               max_restarts: int | None = None, on_status: Callable[[str], None] = lambda message: None) -> WorkerPool:
    """A pool of spawned processes, worker i on ``devices[i]``, each running ``factory``'s handler;
    ``on_status`` hears of the workers' loading (see :class:`~.pool.WorkerPool`)."""
    context = multiprocessing.get_context("spawn")
    threads = threads_per_worker(devices)
    serial = itertools.count()

    def launch(index: int) -> ProcessWorker:
        return ProcessWorker(context, f"worker {index} ({devices[index]}) #{next(serial)}", factory,
                             devices[index], threads)

    return WorkerPool(launch, len(devices), batch_size=batch_size, max_restarts=max_restarts,
                      describe="worker process", on_status=on_status)


class ProcessWorker:
    """The parent's end of one worker process."""

    def __init__(self, context, name: str, factory: HandlerFactory, device: str, threads: int | None) -> None:
        self.name = name
        self._loop = asyncio.get_running_loop()
        self._conn, child_conn = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child_conn, factory, device, threads), name=f"imggen {name}", daemon=True
        )
        self.process.start()
        child_conn.close()
        self._ready: asyncio.Future = self._loop.create_future()
        self._jobs: dict[int, asyncio.Future] = {}
        self._job_ids = itertools.count()
        self._ended = False
        self._abandoned = False  # a batch sent to it was given up (a stop)
        self._loop.add_reader(self._conn.fileno(), self._receive)
        self._loop.add_reader(self.process.sentinel, self._exited)

    async def ready(self) -> None:
        await self._ready

    async def run(self, payloads: list) -> list:
        if self._ended:
            raise WorkerDied(f"exited with code {self.process.exitcode}")
        job_id = next(self._job_ids)
        self._jobs[job_id] = job = self._loop.create_future()
        try:
            self._conn.send(("run", job_id, payloads))
        except OSError as error:
            del self._jobs[job_id]
            raise WorkerDied(f"could not send work: {error}") from None
        try:
            return await job
        except asyncio.CancelledError:  # nobody waits for it: a worker that has not begun it skips it
            self._abandoned = True
            if self._jobs.pop(job_id, None) is not None and not self._ended:
                with contextlib.suppress(OSError):
                    self._conn.send(("withdraw", job_id))
            raise

    async def close(self) -> None:
        if not self._ended:
            if not self._ready.done() or self._abandoned:
                # still loading, or it may be drawing what nobody waits for any more: no file is half-written
                self.process.kill()
            try:
                self._conn.send(None)  # finish the current batch, then exit
            except OSError:
                pass
            await self._loop.run_in_executor(None, self.process.join, _CLOSE_TIMEOUT_S)
            if self.process.is_alive():
                self.process.kill()
                await self._loop.run_in_executor(None, self.process.join)
            self._exited()
        self._conn.close()

    # -- loop callbacks ----------------------------------------------------------------------
    def _receive(self) -> None:
        try:
            while self._conn.poll():
                self._deliver(self._conn.recv())
        except (EOFError, OSError):
            self._loop.remove_reader(self._conn.fileno())  # the sentinel reports the exit

    def _deliver(self, message: tuple) -> None:
        kind, *body = message
        if kind == "ready":
            _settle(self._ready, result=None)
        elif kind == "load_failed":
            _settle(self._ready, error=WorkerDied(body[0], loading=True))
        else:
            job_id, results = body
            job = self._jobs.pop(job_id, None)
            if job is not None:
                _settle(job, result=results)

    def _exited(self) -> None:
        if self._ended:
            return
        self._receive()  # a result sent just before exiting still counts
        self._stop_watching()
        self._ended = True
        # The sentinel closes while the process tears down, a moment before its exit status can be
        # collected; the join is that moment, not a wait for a live process.
        self.process.join(timeout=5)
        code = self.process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        _settle(self._ready, error=WorkerDied(how, loading=True))
        for job in self._jobs.values():
            _settle(job, error=WorkerDied(how))
        self._jobs.clear()

    def _stop_watching(self) -> None:
        for fd in (self._conn.fileno(), self.process.sentinel):
            self._loop.remove_reader(fd)


def _settle(future: asyncio.Future, *, result: Any = None, error: BaseException | None = None) -> None:
    if not future.done():
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


# -- the worker process ---------------------------------------------------------------------
def _worker_main(conn, factory: HandlerFactory, device: str, threads: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the run in the parent, which ends us
    _die_with_parent()
    prepare_worker_environment()
    try:
        handler = factory(device=device, threads=threads)
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which decides
        conn.send(("load_failed", f"{type(error).__name__}: {error}"))
        return
    conn.send(("ready",))
    sending = threading.Lock()  # deferred results are sent from the handler's saving thread

    def reply_for(job_id: int):
        def reply(results: list) -> None:
            with sending:
                try:
                    conn.send(("done", job_id, results))
                except OSError:
                    pass  # the parent is gone; the next recv ends this worker
        return reply

    inbox: collections.deque = collections.deque()
    withdrawn: set[int] = set()
    while True:
        try:
            _read_messages(conn, inbox, withdrawn)  # a withdrawal may follow its job
        except (EOFError, OSError):
            return  # the parent is gone
        message = inbox.popleft()
        if message is None:
            getattr(handler, "close", lambda: None)()  # let deferred results finish
            return
        _, job_id, payloads = message
        if job_id in withdrawn:
            withdrawn.discard(job_id)  # Pause or Stop gave it back before it began
            continue
        call_handler(handler, payloads, reply_for(job_id))


def _read_messages(conn, inbox: collections.deque, withdrawn: set[int]) -> None:
    """Move what the parent has sent into ``inbox`` (jobs and the end) and ``withdrawn`` (job ids),
    waiting while the inbox is empty: a withdrawal alone is no work (the parent may withdraw a job
    this worker has already begun or finished, when its answer had not reached the parent yet)."""
    while not inbox or conn.poll():
        message = conn.recv()
        if message is not None and message[0] == "withdraw":
            withdrawn.add(message[1])
        else:
            inbox.append(message)


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies, so no orphan keeps a GPU."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)
