"""Making the grids of a training set: drawing one, saving it, judging its tiles, and its record in
the grid ledger of ``grids/``; what a failed grid leads to is the engine's decision.

Every grid is a task ``grid-{n}`` in the engine ledger of the grids folder: its prompt and subjects are
fixed when first planned (:func:`~.plan.grid_payload`), the image is saved before the judge runs, and
the judge's verdict is the record's provenance, so a rerun pays for no grid twice. A failure is
classified by :func:`~imggen.engine.retry.decide` and recorded here; :mod:`.tile_pool` acts on the
decision (who waits, whether a grid attempt was spent).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from imggen.backends.grid_drawers import GridDrawer
from imggen.backends.replicate_predictions import ReplicatePredictions
from imggen.engine.errors import ErrorKind, TaskError
from imggen.engine.ledger import Ledger
from imggen.engine.retry import Decision, RetryPolicy, decide
from imggen.engine.tasks import Outcome, Task
from imggen.settings import redact
from imggen.storage.atomic import atomic_write_bytes, is_valid_image

from .descriptions import DescriptionRotation
from .judges import TileJudge, judge_grid
from .layout import grid_file
from .plan import grid_key, grid_number, grid_payload
from .tiles import tile_pngs

log = logging.getLogger("imggen.trainset")


@dataclass(frozen=True)
class DrawnGrid:
    """A finished grid: its number, image, tiles per side and the tiles its judge kept."""

    number: int
    path: Path
    grid: int
    unique_tiles: tuple[int, ...]


@dataclass(frozen=True)
class MadeGrid:
    """A grid this run drew or judged: what it cost, and its tiles as PNG while they are being split."""

    drawn: DrawnGrid
    cost: float
    tiles: asyncio.Future | None = None  # None: split them from the file when first claimed


class GridMaker:
    """Draws, saves and judges grids of ``grid`` tiles per side from ``source``, keeping the grid ledger of ``root``."""

    def __init__(self, root: Path, source: bytes, *, drawer: GridDrawer, judge: TileJudge,
                 rotation: DescriptionRotation, grid: int, predictions: ReplicatePredictions,
                 retry: RetryPolicy = RetryPolicy(), debug_dir: Path | None = None, round_number: int = 0) -> None:
        self.root = Path(root)
        self._round_number = round_number  # a later round's grids get other seeds (see plan.grid_seed)
        self._source = source
        self._drawer = drawer
        self._judge = judge
        self._rotation = rotation
        self._grid = grid
        self._predictions = predictions
        self._retry = retry
        self._debug_dir = debug_dir
        self._drawn_cost: dict[int, float] = {}  # grid number -> the price of a draw whose judge has not answered
        self._ledger: Ledger | None = None
        self._run_id = 0

    # -- life cycle (open inside the run's folder lock) -------------------------------------
    def open(self) -> tuple[list[DrawnGrid], set[int]]:
        """Open the grid ledger for this run: the grids finished in any run, and the numbers refused for good."""
        self._ledger = Ledger(self.root)
        self._run_id = self._ledger.begin_run()
        failed = {grid_number(key) for key in self._ledger.keys("failed")}
        drawn = []
        for key in self._ledger.keys("done"):
            record = self._ledger.task(key)
            drawn.append(DrawnGrid(grid_number(key), self.root / record["outputs"][0], record["payload"]["grid"],
                                   tuple(record["provenance"]["unique_tiles"])))
        return drawn, failed

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.end_run(self._run_id, "finished")
            self._ledger.close()

    # -- one grid -----------------------------------------------------------------------------
    async def make(self, number: int) -> MadeGrid:
        """Grid ``number``: read from disk if an earlier attempt or run saved it, else drawn and saved; then judged."""
        key = grid_key(number)
        record = self._ledger.task(key)
        payload = record["payload"] if record else grid_payload(number, self._grid, self._rotation, self._round_number)
        shape = payload["grid"]
        relative = grid_file(number, self._drawer.output_format)
        self._ledger.plan([Task(key, payload, (relative,))], self._run_id)
        self._ledger.mark_started(key)
        path = self.root / relative
        provenance, tiles = {}, None
        if is_valid_image(path):  # drawn by an earlier attempt or run
            data = path.read_bytes()
            self._predictions.saved(key)
            verdict = await judge_grid(self._judge, data, shape, key=key, calls=self._predictions.answers)
        else:
            made = await self._drawer.draw(
                payload["prompt"], self._source, grid=shape, seed=payload["seed"], key=key
            )
            data, provenance, self._drawn_cost[number] = made.data, made.provenance, made.cost
            # The judge looks while the file is written and split into tiles (off the event loop); the
            # write ends before the ledger is marked. Once on disk the grid was used, whatever the judge says.
            written = asyncio.ensure_future(asyncio.to_thread(atomic_write_bytes, path, data))
            tiles = asyncio.ensure_future(asyncio.to_thread(tile_pngs, data, shape))
            try:
                verdict = await judge_grid(self._judge, data, shape, key=key, calls=self._predictions.answers)
            finally:
                await written
                self._predictions.saved(key)
        if verdict.fallback:
            log.warning("%s: the %s judge found no unique tile; using the corners and centre", key, self._judge.name)
        cost = self._drawn_cost.pop(number, 0.0) + verdict.cost
        self._ledger.mark_done(key, Outcome((relative,), cost, {
            **provenance, "drawer": self._drawer.name, "judge": self._judge.name,
            "unique_tiles": verdict.tiles, "judge_fallback": verdict.fallback,
        }))
        if self._debug_dir is not None:
            await asyncio.to_thread(atomic_write_bytes, self._debug_dir / relative, data)
        return MadeGrid(DrawnGrid(number, path, shape, tuple(verdict.tiles)), cost, tiles)

    def record(self, number: int) -> dict:
        """Grid ``number``'s ledger record: its payload (prompt, seed, subjects) and what drew it."""
        return self._ledger.task(grid_key(number))

    def record_failure(self, number: int, error: Exception) -> Decision:
        """Record how grid ``number`` failed, as :func:`decide` classifies it: refused for good
        (permanent), or released to be drawn again."""
        key = grid_key(number)
        if not isinstance(error, TaskError):
            log.error("grid %s raised", key, exc_info=error)
        decision = decide(error, 1, self._retry)
        message = redact(f"{key}: {decision.message}")
        connection_error = isinstance(error, TaskError) and error.connection_error
        self._ledger.note_attempt_error(key, decision.kind, message, connection_error=connection_error)
        if decision.kind is ErrorKind.PERMANENT:
            log.warning("%s failed for good, drawing another grid instead: %s", key, message)
            self._ledger.mark_failed(key, decision.kind, message)
        else:
            self._ledger.release(key)
        return decision

    def release(self, number: int) -> None:
        """Grid ``number`` was abandoned (the run stops): pending again for the next run."""
        self._ledger.release(grid_key(number))
