"""Serving unique tiles to the training-image slots of a run, drawing grids only as they are needed.

Each slot of the run asks for a tile with :meth:`TilePool.claim`. The pool starts grids (made by
:class:`~.grids.GridMaker`) in parallel only while the waiting slots outnumber the tiles already
available plus the most the grids in flight can still yield, so it never starts more grids than
needed besides those in flight, and stops at ``max_grids`` attempts per run. How many may be in
flight at once is the grids' :class:`~imggen.engine.lanes.Lane` target: ``grid_concurrency``, a number, or
``auto`` (the create pace x the grids' latency, halved by a throttled create).

A rerun reuses the unclaimed tiles of earlier runs' grids. Which slot got which tile, and which
tiles were refused, is kept in the ledger's ``tiles`` table (:mod:`.tile_book`). Each grid is a sub-task of the
runner (:mod:`.grids`): it retries, waits out rate limits and obeys Pause and Stop by the runner's
rules, and the pool acts only on how it ended. A grid refused for good (permanent) is replaced by the
next one; one whose transient failures spent its attempts fails one waiting slot (the runner decides
what follows for it), a fatal one every waiting slot. A grid the run's budget cannot pay for is not
sent (:mod:`imggen.engine.budget`): no other starts until the grids in flight have ended (their
tiles are served; one that was not billed gives its price back), then the pool tries once more, and
if the budget still cannot pay, the waiting slots end the run as a budget stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from imggen.engine.errors import BudgetReached, ErrorKind, TaskError, Withdrawn
from imggen.engine.events import Event, StateChanged
from imggen.images.hashes import DEFAULT_DUP_THRESHOLD
from imggen.images.tiles import tile_pngs

from .duplicates import KeptTiles
from .grids import DrawnGrid, GridMaker
from .plan import GridPlan, grid_key
from .tile_book import TileBook, TileRef

log = logging.getLogger("imggen.trainset")


@dataclass(frozen=True)
class ClaimedTile:
    ref: TileRef
    image: bytes  # the tile as PNG


class TilePool:
    def __init__(self, maker: GridMaker, plan: GridPlan, *, dup_threshold: int = DEFAULT_DUP_THRESHOLD) -> None:
        self.root = maker.root
        self._dup_threshold = dup_threshold
        self._maker = maker
        self._plan = plan
        self.lane = maker.lane  # the grids in flight
        self._waiters: deque[tuple[int, asyncio.Future]] = deque()
        self._available: list[TileRef] = []
        self._in_flight: dict[int, tuple[asyncio.Task, int]] = {}  # grid number -> (task, most tiles it can give)
        self._grids: dict[int, DrawnGrid] = {}  # drawn and judged, in any run
        self._tile_images: dict[int, asyncio.Future[list[bytes]]] = {}  # grid number -> its tiles as PNG
        self._unbilled: dict[int, float] = {}
        self._attempts = 0
        self._closed: TaskError | BudgetReached | Withdrawn | None = None  # why no slot will be served any more
        self._out_of_budget: BudgetReached | None = None  # the budget refused a grid: none starts until those in flight end
        self._failed: set[int] = set()  # grid numbers refused for good
        self._assigned: dict[int, TileRef] = {}  # slot -> its tile
        self._rejected: set[TileRef] = set()  # tiles whose upscale was refused

    # -- life cycle (open inside the run's folder lock) -------------------------------------
    def open(self) -> None:
        self._book = TileBook(self.root.parent)
        self._assigned, self._rejected = self._book.read()
        self.kept = KeptTiles(self._book, threshold=self._dup_threshold)  # tiles made into images, by hash
        drawn, self._failed = self._maker.open()
        for grid in drawn:
            self._add_grid(grid)

    async def close(self, *, cancel: bool) -> None:
        """Finish (or, with ``cancel``, abandon) the grids in flight, then close the grids' and tiles' tables.

        Abandoned Replicate grids stay in the run's book of predictions and are collected by the next run.
        """
        tasks = [task for task, _ in self._in_flight.values()]
        for task in tasks if cancel else ():
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._maker.close()
        self._book.close()

    @property
    def grids_generated(self) -> int:
        return len(self._grids)

    def drawn_grids(self) -> list[DrawnGrid]:
        return [self._grids[number] for number in sorted(self._grids)]

    def __call__(self, event: Event) -> None:
        """A reporter: when the run starts stopping, waiting slots give up (they stay pending)."""
        if isinstance(event, StateChanged) and event.progress.state == "stopping" and self._closed is None:
            self._closed = Withdrawn("the run is stopping; no new grid is started")
            self._fail_waiters(self._closed)

    def withdraw_waiters(self) -> None:
        """The slots waiting for a tile give up for now (Pause, Stop): they wait their turn again and
        claim once the run goes on; the grids in flight go on and their tiles wait for them."""
        self._fail_waiters(Withdrawn("the run is pausing or stopping; this image waits for its tile"))

    # -- what slots call ----------------------------------------------------------------------
    async def claim(self, slot: int) -> ClaimedTile:
        """The tile for ``slot``: the one it had before, or the next unique tile (drawing grids as needed)."""
        ref = self._assigned.get(slot)
        if ref is None or ref in self._rejected:
            if self._closed is not None:
                raise self._closed
            future = asyncio.get_running_loop().create_future()
            self._waiters.append((slot, future))
            self._serve()
            self._launch()
            ref = await future
        tiles = self._tile_images.get(ref.grid)
        if tiles is None:  # a grid of an earlier run: split once, off the event loop, for all its slots
            drawn = self._grids[ref.grid]
            tiles = self._tile_images[ref.grid] = asyncio.ensure_future(
                asyncio.to_thread(lambda: tile_pngs(drawn.path.read_bytes(), drawn.grid)))
        return ClaimedTile(ref, (await tiles)[ref.tile])

    def grid_record(self, number: int) -> dict:
        """Grid ``number``'s ledger record (see :meth:`~.grids.GridMaker.record`)."""
        return self._maker.record(number)

    def bill(self, ref: TileRef) -> float:
        """The price of ``ref``'s grid the first time one of its tiles is finished, else 0."""
        return self._unbilled.pop(ref.grid, 0.0)

    def reject(self, slot: int, ref: TileRef) -> None:
        """Never use ``ref`` again (its upscale was refused, or it repeats a kept tile); ``slot`` gets another."""
        self._rejected.add(ref)
        self._assigned.pop(slot, None)
        self._book.refuse(ref)

    # -- scheduling ---------------------------------------------------------------------------
    def _serve(self) -> None:
        served = []
        while self._waiters and self._available:
            slot, future = self._waiters.popleft()
            if not future.done():
                self._assigned[slot] = self._available.pop(0)
                served.append((slot, future))
        if served:
            self._book.assign([(slot, self._assigned[slot]) for slot, _ in served])  # before any slot goes on
        for slot, future in served:
            future.set_result(self._assigned[slot])

    def _live_waiters(self) -> int:
        return sum(not future.done() for _, future in self._waiters)

    def _launch(self) -> None:
        """Start grids while the waiting slots outnumber what is available and in flight."""
        if self._closed is not None:
            return
        if self._out_of_budget is not None:
            if self._in_flight:
                return
            self._out_of_budget = None  # every grid in flight is settled: the budget may pay for one again
        loop = asyncio.get_running_loop()
        while True:
            uncovered = self._live_waiters() - len(self._available)
            if uncovered <= sum(most for _, most in self._in_flight.values()):
                return
            if len(self._in_flight) >= self.lane.target.value:
                return
            if self._attempts >= self._plan.max_grids:
                if not self._in_flight:
                    self._closed = TaskError(
                        ErrorKind.FATAL,
                        f"no unique tile left after {self._attempts} grid attempts in this run "
                        "(max_generation_attempts); raise it and rerun to continue",
                    )
                    self._fail_waiters(self._closed)
                return
            number = self._next_number()
            self._attempts += 1
            task = loop.create_task(self._grid_attempt(number), name=grid_key(number))
            self._in_flight[number] = (task, self._plan.grid**2)

    def _next_number(self) -> int:
        number = 1
        while number in self._grids or number in self._failed or number in self._in_flight:
            number += 1
        return number

    def _fail_waiters(self, error: TaskError, *, first_only: bool = False) -> None:
        while self._waiters:
            _, future = self._waiters.popleft()
            if not future.done():
                future.set_exception(error)
                if first_only:
                    return

    async def _grid_attempt(self, number: int) -> None:
        try:
            made = await self._maker.make(number)
        except Withdrawn:  # the run is stopping: nothing was sent, and the grid is not a failure
            self._attempts -= 1
        except BudgetReached as reached:  # nothing was sent
            self._attempts -= 1
            if set(self._in_flight) - {number}:  # they serve their slots, or give their price back
                self._out_of_budget = reached
            else:
                self._closed = reached
                self._fail_waiters(reached)
        except TaskError as error:
            self._grid_failed(number, error)
        else:
            self._unbilled[number] = made.cost
            if made.tiles is not None:
                self._tile_images[number] = made.tiles
            self._add_grid(made.drawn)
        finally:
            self._in_flight.pop(number, None)
            self._serve()
            self._launch()

    def _grid_failed(self, number: int, error: TaskError) -> None:
        """Act on how a grid that will not be drawn now ended (the runner recorded it)."""
        if error.kind is ErrorKind.PERMANENT:
            log.warning("%s failed for good, drawing another grid instead: %s", grid_key(number), error.message)
            self._failed.add(number)
        elif error.kind is ErrorKind.FATAL:
            self._closed = error
            self._fail_waiters(error)
        else:
            self._fail_waiters(error, first_only=True)

    def _add_grid(self, grid: DrawnGrid) -> None:
        self._grids[grid.number] = grid
        taken = set(self._assigned.values()) | self._rejected
        self._available += [ref for ref in (TileRef(grid.number, t) for t in grid.unique_tiles) if ref not in taken]
