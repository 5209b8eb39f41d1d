"""Items made in batches by sub-tasks and claimed by the run's tasks, with no more batches started
than the waiting tasks need (a training set's tiles, made by its grids).

A task that needs an item awaits :meth:`Supply.claim`. The supply starts batches (numbered 1, 2, ...;
each made by ``produce``, normally a sub-task of the runner, :func:`~.this_run.run_subtask`, so it
is paced, retried, budgeted and controlled by the runner's rules) only while the waiting claims
outnumber the items available plus the most the batches in flight can still yield, never more at
once than its :class:`~.lanes.Lane`'s target, and at most ``max_batches`` per run.

How a batch ended decides what follows, the same way for every pipeline:

* made: its items join the supply and go to the waiting claims, first come first served;
* refused for good (permanent): the next batch replaces it, and its number is not used again;
* transient failures spent its attempts: one waiting claim fails with it (the runner decides what
  follows for that task); the number is tried again by a later batch;
* fatal: every waiting claim fails, and no batch starts any more;
* the run's budget cannot pay for it (nothing was sent): no other batch starts until those in
  flight have ended (their items are served; one that was not billed gives its price back), then
  the supply tries once more, and if the budget still cannot pay, the waiting claims end the run
  as a budget stop;
* the run stopped first (nothing was sent): the attempt does not count.

When the run pauses or stops, the waiting claims are withdrawn (:class:`~.errors.Withdrawn`: the
runner holds their tasks, or leaves them pending); the batches in flight go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Awaitable, Callable, Generic, Hashable, Iterable, TypeVar

from .errors import BudgetReached, ErrorKind, TaskError, Withdrawn
from .events import Event, StateChanged
from .lanes import Lane

log = logging.getLogger("imggen.engine")

Item = TypeVar("Item")


class Supply(Generic[Item]):
    """Serves items to claims, making batches with ``produce(number) -> items`` as they are needed.

    ``batch_size``: the most items one batch can yield. ``used``: batch numbers not to make again
    (made or refused in earlier runs). ``on_serve`` is told each (claimant, item) pair before the
    claimants go on, so the pipeline can keep who got what. ``describe(number)`` names a batch in
    the log; ``exhausted(attempts)`` says why the claims fail once ``max_batches`` were tried.
    """

    def __init__(self, produce: Callable[[int], Awaitable[list[Item]]], *, lane: Lane, batch_size: int,
                 max_batches: int, used: Iterable[int] = (),
                 on_serve: Callable[[list[tuple[Hashable, Item]]], None] = lambda served: None,
                 describe: Callable[[int], str] = str, exhausted: Callable[[int], str]) -> None:
        self.lane = lane  # the batches in flight
        self._produce = produce
        self._batch_size = batch_size
        self._max_batches = max_batches
        self._used = set(used)
        self._on_serve = on_serve
        self._describe = describe
        self._exhausted = exhausted
        self._waiters: deque[tuple[Hashable, asyncio.Future]] = deque()
        self._available: list[Item] = []
        self._in_flight: dict[int, asyncio.Task] = {}
        self._attempts = 0
        self._closed: TaskError | BudgetReached | Withdrawn | None = None  # why no claim is served any more
        self._out_of_budget: BudgetReached | None = None  # none starts until the batches in flight end

    def add(self, items: Iterable[Item]) -> None:
        """Items available to claims (from batches of earlier runs)."""
        self._available += items

    async def claim(self, claimant: Hashable) -> Item:
        """The next item for ``claimant``, once there is one (starting batches as needed)."""
        if self._closed is not None:
            raise self._closed
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((claimant, future))
        self._serve()
        self._launch()
        return await future

    def withdraw_waiters(self) -> None:
        """The claims waiting give up for now (Pause, Stop): their tasks claim again once the run goes
        on; the batches in flight go on and their items wait for them."""
        self._fail_waiters(Withdrawn("the run is pausing or stopping; this task waits for its item"))

    def __call__(self, event: Event) -> None:
        """A reporter: when the run starts stopping, no batch starts any more and waiting claims give up."""
        if isinstance(event, StateChanged) and event.progress.state == "stopping" and self._closed is None:
            self._closed = Withdrawn("the run is stopping; no new batch is started")
            self._fail_waiters(self._closed)

    async def close(self, *, cancel: bool) -> None:
        """Wait for the batches in flight to end (with ``cancel``, cancel them first)."""
        tasks = list(self._in_flight.values())
        for task in tasks if cancel else ():
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- scheduling ---------------------------------------------------------------------------
    def _serve(self) -> None:
        served = []
        while self._waiters and self._available:
            claimant, future = self._waiters.popleft()
            if not future.done():
                served.append((claimant, future, self._available.pop(0)))
        if served:
            self._on_serve([(claimant, item) for claimant, _, item in served])  # before any claimant goes on
        for _, future, item in served:
            future.set_result(item)

    def _launch(self) -> None:
        """Start batches while the waiting claims outnumber what is available and in flight."""
        if self._closed is not None:
            return
        if self._out_of_budget is not None:
            if self._in_flight:
                return
            self._out_of_budget = None  # every batch in flight is settled: the budget may pay for one again
        while True:
            uncovered = sum(not future.done() for _, future in self._waiters) - len(self._available)
            if uncovered <= len(self._in_flight) * self._batch_size or len(self._in_flight) >= self.lane.target.value:
                return
            if self._attempts >= self._max_batches:
                if not self._in_flight:
                    self._closed = TaskError(ErrorKind.FATAL, self._exhausted(self._attempts))
                    self._fail_waiters(self._closed)
                return
            number = next(n for n in range(1, len(self._used) + 2) if n not in self._used)
            self._used.add(number)
            self._attempts += 1
            self._in_flight[number] = asyncio.get_running_loop().create_task(
                self._batch(number), name=self._describe(number))

    def _fail_waiters(self, error: Exception, *, first_only: bool = False) -> None:
        while self._waiters:
            _, future = self._waiters.popleft()
            if not future.done():
                future.set_exception(error)
                if first_only:
                    return

    async def _batch(self, number: int) -> None:
        try:
            items = await self._produce(number)
        except Withdrawn:  # the run is stopping: nothing was sent, and the batch is not a failure
            self._not_made(number)
        except BudgetReached as reached:  # nothing was sent
            self._not_made(number)
            if set(self._in_flight) - {number}:  # they serve their claims, or give their price back
                self._out_of_budget = reached
            else:
                self._closed = reached
                self._fail_waiters(reached)
        except TaskError as error:
            self._failed(number, error)
        else:
            self._available += items
        finally:
            self._in_flight.pop(number, None)
            self._serve()
            self._launch()

    def _not_made(self, number: int) -> None:
        self._attempts -= 1
        self._used.discard(number)

    def _failed(self, number: int, error: TaskError) -> None:
        """Act on how a batch that was not made ended (the runner recorded it)."""
        if error.kind is ErrorKind.PERMANENT:
            log.warning("%s failed for good; starting another instead: %s", self._describe(number), error.message)
        elif error.kind is ErrorKind.FATAL:
            self._closed = error
            self._fail_waiters(error)
        else:
            self._used.discard(number)  # tried again by a later batch
            self._fail_waiters(error, first_only=True)
