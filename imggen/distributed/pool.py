"""A pool of model workers fed from one queue, with the crash policy.

Each worker (a local process or a Ray actor) has a *slot*: a coroutine on the run's loop that
pulls the next batch from the shared :class:`~imggen.distributed.dispatch.Dispatcher` whenever its
worker is free, so fast workers take more work (dynamic balancing, not an even split). Workers are
started on the first submission, so a rerun with nothing left to do loads no model.

Crash policy: a worker that dies while running a batch turns each item of it into a transient
:class:`~imggen.engine.errors.TaskError` (the runner retries it, usually on another worker), and its
slot starts a replacement while the pool's restart allowance lasts (by default one restart per
worker); after that the pool continues with fewer workers. A worker that cannot load its model is
not replaced (loading again would fail the same way). When no worker is left, every waiting and
later item fails with a fatal error that carries the last worker's message, and the run stops.

Pause and Stop hold within what the workers draw: :meth:`WorkerPool.withdraw_waiting` gives back
the items queued here and the batches waiting in a worker's inbox (a process worker skips those
it has not begun; a Ray actor is sent one batch at a time, since Ray cannot take back a queued
call), each as :class:`~imggen.engine.errors.Withdrawn`. What runs inside a worker is
:mod:`.worker_side`.

Loading a model can take minutes, so the pool says what it does through ``on_status`` (one line
each): ``loading the model on 2 worker processes`` when the first item arrives, ``1 of 2 worker
processes ready in 38 s; generating while the others load`` when the first of several is (images
start then, so this line always comes before the first one), then ``2 worker processes ready in
41 s`` (or how many of them could load) once every first worker has loaded or failed to. A run that
ends while some still load never says that last line: they were not needed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Callable, Hashable, Protocol

from ..engine.errors import ErrorKind, TaskError, Withdrawn
from .dispatch import Dispatcher
from .worker_side import from_wire

log = logging.getLogger("imggen.distributed")


class WorkerDied(RuntimeError):
    """A worker process or actor ended; ``loading`` is true if it never finished loading its model."""

    def __init__(self, message: str, *, loading: bool = False) -> None:
        super().__init__(message)
        self.loading = loading


class Worker(Protocol):
    name: str

    async def ready(self) -> None:
        """Wait until the model is loaded; raise :class:`WorkerDied` if it never will be."""

    async def run(self, payloads: list) -> list:
        """Run one batch; the wire results, one per payload. Raise :class:`WorkerDied` if the worker dies.
        Two calls may be in flight at once (the next batch waits in the worker's inbox)."""

    async def close(self) -> None:
        """Ask the worker to finish and end it."""


class WorkerPool:
    """``await pool.submit(payload, group)`` runs one item on some worker and returns its value."""

    STILL_LOADING_NOTICE_S = 60.0  # said once when others still load this long (or twice the first's time) after it

    def __init__(
        self,
        launch: Callable[[int], Worker],
        size: int,
        *,
        batch_size: int = 1,
        pipeline_depth: int = 2,
        max_restarts: int | None = None,
        describe: str = "worker",
        on_status: Callable[[str], None] = lambda message: None,
        slow_load_hint: str = "a big model on a slow disk takes a while; one that never loads is stuck",
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one worker")
        self.size = size
        self.batch_size = batch_size
        self.pipeline_depth = pipeline_depth  # batches sent before the first returns (2: no wait for the parent)
        self.describe = describe
        self._launch = launch
        self._restarts_left = size if max_restarts is None else max_restarts
        self._dispatcher: Dispatcher | None = None
        self._slots: list[asyncio.Task] = []
        self._workers: dict[int, Worker] = {}
        self._alive = 0
        self._last_error = "no worker started"
        self.on_status = on_status  # may be set until the first submit
        self.slow_load_hint = slow_load_hint  # why workers may still be loading long after the first
        self._loading: dict[str, float | int] = {}  # while the first workers load: when it began, and how many did
        self._in_flight: dict[int, deque] = {}  # per slot: the batches sent to its worker, the one it draws first

    @property
    def capacity(self) -> int:
        """Items worth keeping in flight: per worker, the batches sent to it (``pipeline_depth``) and one
        queued here."""
        return (self.pipeline_depth + 1) * self.size * self.batch_size

    async def submit(self, payload: Any, group: Hashable = None) -> Any:
        if self._dispatcher is None:
            self._start()
        value, error = from_wire(await self._dispatcher.submit(payload, group))
        if error is not None:
            raise error
        return value

    def withdraw_waiting(self) -> None:
        """Give back every item no worker is drawing: those queued here and the batches waiting in a
        worker's inbox, each raising :class:`~imggen.engine.errors.Withdrawn` (Pause and Stop hold
        within what is being drawn). A worker still loading its model is drawing nothing."""
        if self._dispatcher is None:
            return
        self._dispatcher.fail_queued(Withdrawn("waiting for a model worker"))
        for in_flight in self._in_flight.values():
            while len(in_flight) > 1:  # the first batch is being drawn; the others wait in the inbox
                batch, job = in_flight.pop()
                job.cancel()  # the worker skips it if it has not begun it
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(Withdrawn("waiting in a model worker's inbox"))

    async def close(self) -> None:
        """Stop the slots and end every worker (a batch in flight is abandoned; its files stay atomic)."""
        self._loading = {}  # no notice about workers that are gone
        for slot in self._slots:
            slot.cancel()
        await asyncio.gather(*self._slots, return_exceptions=True)
        await asyncio.gather(*(worker.close() for worker in self._workers.values()), return_exceptions=True)
        self._workers.clear()
        self._slots.clear()

    async def __aenter__(self) -> "WorkerPool":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- slots -------------------------------------------------------------------------------
    def _start(self) -> None:
        self._dispatcher = Dispatcher(self.batch_size)
        self._alive = self.size
        self._loading = {"began": time.monotonic(), "ready": 0, "ended": 0}
        self.on_status(f"loading the model on {_count(self.size, self.describe)}…")
        loop = asyncio.get_running_loop()
        self._slots = [loop.create_task(self._slot(index)) for index in range(self.size)]

    async def _slot(self, index: int) -> None:
        try:
            while await self._serve(index):
                if self._restarts_left <= 0:
                    log.warning("%s %d is not replaced (no restarts left); continuing with fewer", self.describe, index)
                    break
                self._restarts_left -= 1
                log.warning("starting a replacement for %s %d", self.describe, index)
        finally:
            self._workers.pop(index, None)
            self._in_flight.pop(index, None)
            self._alive -= 1
            if self._alive == 0:
                self._dispatcher.close(
                    TaskError(ErrorKind.FATAL, f"no {self.describe} left to generate images: {self._last_error}")
                )

    async def _serve(self, index: int) -> bool:
        """Run one worker until it dies; True if it should be replaced."""
        worker = self._launch(index)
        self._workers[index] = worker
        try:
            await worker.ready()
        except WorkerDied as died:
            self._last_error = f"{worker.name} could not load the model: {died}"
            log.error("%s", self._last_error)
            self._loaded(ready=False)
            await worker.close()
            return False
        self._loaded(ready=True)
        in_flight: deque[tuple[list, asyncio.Task]] = deque()
        self._in_flight[index] = in_flight
        try:
            while True:
                while len(in_flight) < self.pipeline_depth:
                    batch = self._dispatcher.take_batch() if in_flight else await self._dispatcher.next_batch()
                    if not batch:
                        break
                    job = asyncio.ensure_future(worker.run([item.payload for item in batch]))
                    in_flight.append((batch, job))
                batch, job = in_flight[0]
                try:
                    results = await job
                except WorkerDied as died:
                    self._last_error = f"{worker.name} died: {died}"
                    await self._fail_in_flight(in_flight)
                    await worker.close()
                    return True
                in_flight.popleft()
                for item, result in zip(batch, results):
                    _settle(item, result)
        except BaseException:
            for batch, job in in_flight:  # the slot was cancelled: nobody waits for these any more
                job.cancel()
                for item in batch:
                    if not item.future.done():
                        item.future.cancel()
            raise

    def _loaded(self, *, ready: bool) -> None:
        """Count one of the first workers as loaded (or not); say so once all of them are."""
        loading = self._loading
        if not loading:
            return  # a replacement worker
        loading["ready"] += ready
        loading["ended"] += 1
        seconds = time.monotonic() - loading["began"]
        workers = _count(self.size, self.describe)
        if loading["ended"] == self.size:
            which = workers if loading["ready"] == self.size else f"{loading['ready']} of {workers}"
            self.on_status(f"{which} ready in {seconds:.1f} s")
            self._loading = {}
        elif ready and loading["ready"] == 1:
            self.on_status(f"1 of {workers} ready in {seconds:.1f} s; generating while the others load")
            asyncio.get_running_loop().call_later(max(self.STILL_LOADING_NOTICE_S, 2 * seconds),
                                                  self._still_loading, loading)

    def _still_loading(self, loading: dict) -> None:
        """The others still load long after the first: say so, and why that may be (once)."""
        if self._loading is loading:
            left = self.size - loading["ended"]
            waited = time.monotonic() - loading["began"]
            self.on_status(f"{left} of {_count(self.size, self.describe)} still not ready after {waited:.0f} s: "
                           f"{self.slow_load_hint}")

    async def _fail_in_flight(self, in_flight: deque) -> None:
        """Every batch the dead worker held becomes a transient error, so the runner retries it."""
        await asyncio.gather(*(job for _, job in in_flight), return_exceptions=True)
        items = [item for batch, _ in in_flight for item in batch]
        log.error("%s with %d item(s) in flight; they will be retried", self._last_error, len(items))
        for item in items:
            _settle(item, ("error", ErrorKind.TRANSIENT.value, f"{self._last_error}; retrying"))
        in_flight.clear()


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "es" if noun.endswith("s") else "s")


def _settle(item, result: tuple) -> None:
    if not item.future.done():
        item.future.set_result(result)
