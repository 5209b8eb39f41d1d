"""The grids behind a training set, and the unique tiles they yield, handed to training-image slots.

Each slot of the run asks for a tile with :meth:`TilePool.claim`. The pool draws grids in
parallel only while the waiting slots outnumber the tiles already available plus the most the
grids in flight can still yield, so it never starts more grids than needed besides those in
flight, and stops at ``max_grids`` attempts per run. How many may be in flight at once is the
grids' :class:`~.lanes.Lane` target: ``grid_concurrency``, a number, or ``auto`` (the create pace
x the grids' latency, halved by a throttled create).

The pool owns one folder (``grids/`` of the run). Every grid is a task ``grid-{n}`` in the
engine ledger of that folder: its prompt and subjects are fixed when first planned, the image is saved before the
judge runs, and the judge's verdict is the record's provenance, so a rerun pays for no grid twice
and reuses the unclaimed tiles of earlier runs. Which slot got which tile is kept in
``tile_assignments.json``. What a failed grid leads to is the engine's decision
(:func:`~imggen.engine.retry.decide`): it goes to the runner through a waiting slot (rate limits,
transient and fatal errors take the runner's usual paths; a rate-limited grid spends no grid
attempt, and its wait holds every create through the prediction journal); a grid that will never
be drawn (permanent) is recorded and replaced by the next one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from imggen.engine.concurrency import AUTO
from imggen.engine.errors import ErrorKind, TaskError
from imggen.engine.events import Event, StateChanged
from imggen.engine.ledger import Ledger
from imggen.engine.retry import RetryPolicy, decide
from imggen.engine.tasks import Outcome, Task
from imggen.settings import redact
from imggen.storage.atomic import atomic_write_bytes, atomic_write_json, is_valid_image

from .descriptions import DescriptionRotation
from .drawers import GridDrawer, ReplicateGridDrawer
from .journal import PredictionJournal
from .judges import TileJudge, judge_grid
from .lanes import Lane
from .prompts import build_grid_prompt
from .tiles import tile_pngs

log = logging.getLogger("imggen.trainset")

ASSIGNMENTS = "tile_assignments.json"


@dataclass(frozen=True)
class TileRef:
    """Tile ``tile`` (0-based, row-major) of grid number ``grid``."""

    grid: int
    tile: int

    @property
    def key(self) -> str:
        return f"upscale-{self.grid}-{self.tile}"


@dataclass(frozen=True)
class ClaimedTile:
    ref: TileRef
    image: bytes  # the tile as PNG


@dataclass(frozen=True)
class DrawnGrid:
    """A finished grid: its number, image, tiles per side and the tiles its judge kept."""

    number: int
    path: Path
    grid: int
    unique_tiles: tuple[int, ...]


@dataclass(frozen=True)
class GridPlan:
    grid: int = 3  # tiles per side
    max_grids: int = 10  # grid attempts per run (the seed's max_generation_attempts)
    grid_concurrency: int | str = AUTO  # grids drawn at once: a number, or "auto" (see .lanes)


def grid_number(key: str) -> int:
    return int(key.removeprefix("grid-"))


class TilePool:
    def __init__(
        self,
        root: Path,
        source: bytes,
        *,
        drawer: GridDrawer,
        judge: TileJudge,
        rotation: DescriptionRotation,
        plan: GridPlan,
        journal: PredictionJournal,
        retry: RetryPolicy = RetryPolicy(),
        debug_dir: Path | None = None,
    ) -> None:
        self.root = Path(root)
        self._source = source
        self._drawer = drawer
        self._judge = judge
        self._rotation = rotation
        self._plan = plan
        self._journal = journal
        self.lane = Lane("grids", plan.grid_concurrency, journal, paced=isinstance(drawer, ReplicateGridDrawer))
        self._retry = retry
        self._debug_dir = debug_dir
        self._waiters: deque[tuple[int, asyncio.Future]] = deque()
        self._available: list[TileRef] = []
        self._in_flight: dict[int, tuple[asyncio.Task, int]] = {}  # grid number -> (task, most tiles it can give)
        self._shapes: dict[int, int] = {}  # grid number -> tiles per side
        self._paths: dict[int, str] = {}  # grid number -> its image, relative to the root
        self._kept: dict[int, tuple[int, ...]] = {}  # grid number -> the tiles its judge kept
        self._tile_images: dict[int, asyncio.Future[list[bytes]]] = {}  # grid number -> its tiles as PNG
        self._unbilled: dict[int, float] = {}
        self._drawn_cost: dict[int, float] = {}
        self._attempts = 0
        self._closed: TaskError | None = None
        self._ledger: Ledger | None = None
        self._run_id = 0
        self._done: set[int] = set()  # grid numbers drawn and judged, in any run
        self._failed: set[int] = set()  # grid numbers refused for good
        self._assigned: dict[int, TileRef] = {}  # slot -> its tile
        self._rejected: set[TileRef] = set()  # tiles whose upscale was refused

    # -- life cycle (open inside the run's folder lock) -------------------------------------
    def open(self) -> None:
        self._ledger = Ledger(self.root)
        self._run_id = self._ledger.begin_run()
        self._assigned, self._rejected = self._read_assignments()
        self._failed = {grid_number(key) for key in self._ledger.keys("failed")}
        for key in self._ledger.keys("done"):
            record = self._ledger.task(key)
            self._add_grid(grid_number(key), record["payload"]["grid"], record["provenance"]["unique_tiles"],
                           record["outputs"][0])

    async def close(self, *, cancel: bool) -> None:
        """Finish (or, with ``cancel``, abandon) the grids in flight, then close the grid ledger.

        Abandoned Replicate grids stay in the prediction journal and are collected by the next run.
        """
        tasks = [task for task, _ in self._in_flight.values()]
        for task in tasks if cancel else ():
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._ledger is not None:
            self._ledger.end_run(self._run_id, "finished")
            self._ledger.close()

    @property
    def grids_generated(self) -> int:
        return len(self._done)

    def drawn_grids(self) -> list[DrawnGrid]:
        return [DrawnGrid(n, self.root / self._paths[n], self._shapes[n], self._kept[n]) for n in sorted(self._done)]

    def __call__(self, event: Event) -> None:
        """A reporter: when the run starts stopping, waiting slots give up (they stay pending)."""
        if isinstance(event, StateChanged) and event.progress.state == "stopping" and self._closed is None:
            self._closed = TaskError(ErrorKind.TRANSIENT, "the run is stopping; no new grid is started")
            self._fail_waiters(self._closed)

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
            path, shape = self.root / self._paths[ref.grid], self._shapes[ref.grid]
            tiles = self._tile_images[ref.grid] = asyncio.ensure_future(
                asyncio.to_thread(lambda: tile_pngs(path.read_bytes(), shape)))
        return ClaimedTile(ref, (await tiles)[ref.tile])

    def bill(self, ref: TileRef) -> float:
        """The price of ``ref``'s grid the first time one of its tiles is finished, else 0."""
        return self._unbilled.pop(ref.grid, 0.0)

    def reject(self, slot: int, ref: TileRef) -> None:
        """Never use ``ref`` again (its upscale was refused, or it repeats a kept tile); ``slot`` gets another."""
        self._rejected.add(ref)
        self._assigned.pop(slot, None)
        self._save_assignments()

    # -- scheduling ---------------------------------------------------------------------------
    def _serve(self) -> None:
        served = []
        while self._waiters and self._available:
            slot, future = self._waiters.popleft()
            if not future.done():
                self._assigned[slot] = self._available.pop(0)
                served.append((future, self._assigned[slot]))
        if served:
            self._save_assignments()  # once for the lot, before any slot goes on with its tile
        for future, ref in served:
            future.set_result(ref)

    def _live_waiters(self) -> int:
        return sum(not future.done() for _, future in self._waiters)

    def _launch(self) -> None:
        """Start grids while the waiting slots outnumber what is available and in flight."""
        if self._closed is not None:
            return
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
            task = loop.create_task(self._grid_attempt(number), name=f"grid-{number}")
            self._in_flight[number] = (task, self._plan.grid**2)

    def _next_number(self) -> int:
        number = 1
        while number in self._done or number in self._failed or number in self._in_flight:
            number += 1
        return number

    def _fail_waiters(self, error: TaskError) -> None:
        while self._waiters:
            _, future = self._waiters.popleft()
            if not future.done():
                future.set_exception(error)

    def _fail_first_waiter(self, error: TaskError) -> None:
        while self._waiters:
            _, future = self._waiters.popleft()
            if not future.done():
                future.set_exception(error)
                return

    # -- one grid -----------------------------------------------------------------------------
    async def _grid_attempt(self, number: int) -> None:
        key = f"grid-{number}"
        try:
            async with self.lane.flight(key):
                shape, tiles, cost, relative = await self._make_grid(number, key)
        except asyncio.CancelledError:
            self._ledger.release(key)
            raise
        except Exception as error:  # noqa: BLE001 - the engine's decision sorts bugs from provider errors
            if not isinstance(error, TaskError):
                log.error("grid %s raised", key, exc_info=error)
            self._grid_failed(number, key, error)
        else:
            self._unbilled[number] = cost
            self._add_grid(number, shape, tiles, relative)
        finally:
            self._in_flight.pop(number, None)
            self._serve()
            self._launch()

    async def _make_grid(self, number: int, key: str) -> tuple[int, list[int], float, str]:
        record = self._ledger.task(key)
        payload = record["payload"] if record else self._new_payload(number)
        shape = payload["grid"]
        relative = self._grid_path(number)
        self._ledger.plan([Task(key, payload, (relative,))], self._run_id)
        self._ledger.mark_started(key)
        path = self.root / relative
        provenance = {}
        if is_valid_image(path):  # drawn by an earlier attempt or run
            data = path.read_bytes()
            self._journal.saved(key)
            verdict = await judge_grid(self._judge, data, shape, key=key, calls=self._journal.answers)
        else:
            made = await self._drawer.draw(
                payload["prompt"], self._source, grid=shape, seed=payload["seed"], key=key, journal=self._journal
            )
            data, provenance, self._drawn_cost[number] = made.data, made.provenance, made.cost
            # The judge looks while the file is written and split into tiles (off the event loop); the
            # write ends before the ledger is marked. Once on disk the grid was used, whatever the judge says.
            written = asyncio.ensure_future(asyncio.to_thread(atomic_write_bytes, path, data))
            self._tile_images[number] = asyncio.ensure_future(asyncio.to_thread(tile_pngs, data, shape))
            try:
                verdict = await judge_grid(self._judge, data, shape, key=key, calls=self._journal.answers)
            finally:
                await written
                self._journal.saved(key)
        if verdict.fallback:
            log.warning("%s: the %s judge found no unique tile; using the corners and centre", key, self._judge.name)
        cost = self._drawn_cost.pop(number, 0.0) + verdict.cost
        self._ledger.mark_done(key, Outcome((relative,), cost, {
            **provenance, "drawer": self._drawer.name, "judge": self._judge.name,
            "unique_tiles": verdict.tiles, "judge_fallback": verdict.fallback,
        }))
        if self._debug_dir is not None:
            debug_copy = self._debug_dir / f"grid{number}.{self._drawer.output_format}"
            await asyncio.to_thread(atomic_write_bytes, debug_copy, data)
        return shape, verdict.tiles, cost, relative

    def _new_payload(self, number: int) -> dict:
        shape = self._plan.grid
        subjects = self._rotation.draw(shape * shape)
        return {
            "grid": shape,
            "seed": number,
            "prompt": build_grid_prompt(subjects, shape),
            "subjects": [{"category": s.category, "text": s.text} for s in subjects],
        }

    def _grid_failed(self, number: int, key: str, error: Exception) -> None:
        """Record a failed grid and pass the failure to a waiting slot, as :func:`decide` says."""
        decision = decide(error, 1, self._retry)
        message = redact(f"{key}: {decision.message}")
        connection_error = isinstance(error, TaskError) and error.connection_error
        self._ledger.note_attempt_error(key, decision.kind, message, connection_error=connection_error)
        if decision.kind is ErrorKind.PERMANENT:
            log.warning("%s failed for good, drawing another grid instead: %s", key, message)
            self._ledger.mark_failed(key, decision.kind, message)
            self._failed.add(number)
            return
        self._ledger.release(key)
        if not decision.spends_attempt:
            self._attempts -= 1  # nothing was drawn (e.g. a throttled create): the attempt is not spent
        if decision.kind is ErrorKind.FATAL:
            self._closed = error
            self._fail_waiters(error)
        else:
            self._fail_first_waiter(error)

    def _add_grid(self, number: int, shape: int, tiles: list[int], relative: str) -> None:
        self._done.add(number)
        self._shapes[number] = shape
        self._paths[number] = relative
        self._kept[number] = tuple(tiles)
        taken = set(self._assigned.values()) | self._rejected
        self._available += [ref for ref in (TileRef(number, t) for t in tiles) if ref not in taken]

    def _grid_path(self, number: int) -> str:
        return f"grid{number}.{self._drawer.output_format}"

    # -- the slot -> tile record --------------------------------------------------------------
    def _read_assignments(self) -> tuple[dict[int, TileRef], set[TileRef]]:
        try:
            state = json.loads((self.root / ASSIGNMENTS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}, set()
        assigned = {int(slot): TileRef(*ref) for slot, ref in state.get("assigned", {}).items()}
        return assigned, {TileRef(*ref) for ref in state.get("rejected", [])}

    def _save_assignments(self) -> None:
        atomic_write_json(self.root / ASSIGNMENTS, {
            "assigned": {str(slot): [ref.grid, ref.tile] for slot, ref in sorted(self._assigned.items())},
            "rejected": sorted([ref.grid, ref.tile] for ref in self._rejected),
        })
