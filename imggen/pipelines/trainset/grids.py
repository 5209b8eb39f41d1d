"""Making the grids of a training set: drawing one, saving it, judging its tiles.

Every grid is a task ``grid-{n}`` in the ``grids`` table of the run folder's ledger, run as a
sub-task of the training image that waits for it (:func:`~imggen.engine.this_run.run_subtask`), so
the runner retries, paces, holds and controls it. Its prompt and subjects are fixed when first
planned (:func:`~.plan.grid_payload`), the image is saved before the judge runs, and the judge's
verdict is the record's provenance, so a rerun pays for no grid twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from imggen.backends.grid_drawers import GridDrawer
from imggen.backends.replicate_predictions import ReplicatePredictions
from imggen.backends.tile_judges import TileJudge, judge_grid
from imggen.engine.errors import ErrorKind
from imggen.engine.lanes import Lane
from imggen.engine.ledger import Ledger
from imggen.engine.this_run import run_subtask
from imggen.engine.tasks import Outcome, Task
from imggen.images.tiles import tile_pngs
from imggen.storage.atomic import atomic_write_bytes, is_valid_image

from .descriptions import DescriptionPool
from .layout import GRIDS, OLD_GRID_LEDGER, grid_file
from .plan import grid_key, grid_number, grid_payload

log = logging.getLogger("imggen.trainset")
PLANNED_BY_NO_RUN = 0  # a grid is planned when a training image needs it, not by a run's plan


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
    """Draws, saves and judges grids of ``grid`` tiles per side from ``source`` into ``root`` (the
    grids folder), each a task of the ``grids`` table of its run folder's ledger."""

    def __init__(self, root: Path, source: bytes, *, drawer: GridDrawer, judge: TileJudge,
                 descriptions: DescriptionPool, grid: int, predictions: ReplicatePredictions, lane: Lane,
                 debug_dir: Path | None = None, round_number: int = 0) -> None:
        self.root = Path(root)
        self.lane = lane  # the grids in flight
        self._round_number = round_number  # a later round's grids get other seeds (see plan.grid_seed)
        self._source = source
        self._drawer = drawer
        self._judge = judge
        self._descriptions = descriptions
        self.grid = grid  # tiles per side
        self._predictions = predictions
        self._debug_dir = debug_dir
        self._drawn_cost: dict[int, float] = {}  # grid number -> the price of a draw whose judge has not answered
        self._tiles: dict[int, asyncio.Future] = {}  # grid number -> its tiles being split, from its latest attempt
        self._ledger: Ledger | None = None

    # -- life cycle (open inside the run's folder lock) -------------------------------------
    def open(self) -> tuple[list[DrawnGrid], set[int]]:
        """Open the grids' table for this run: the grids finished in any run, and the numbers refused for good."""
        self._ledger = Ledger(self.root.parent, table=GRIDS)
        self._ledger.adopt(self.root.parent / OLD_GRID_LEDGER)  # where an earlier layout kept the grids
        failed = {grid_number(f["key"]) for f in self._ledger.failures() if f["error_kind"] == ErrorKind.PERMANENT.value}
        drawn = []
        for key in self._ledger.keys("done"):
            record = self._ledger.task(key)
            drawn.append(DrawnGrid(grid_number(key), self.root / record["outputs"][0], record["payload"]["grid"],
                                   tuple(record["provenance"]["unique_tiles"])))
        return drawn, failed

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()

    # -- one grid -----------------------------------------------------------------------------
    async def make(self, number: int) -> MadeGrid:
        """Grid ``number``, run as a sub-task: its outcome, or the error that ended it (see
        :meth:`~imggen.engine.runner.Runner.subtask`)."""
        key = grid_key(number)
        record = self._ledger.task(key)
        payload = record["payload"] if record else grid_payload(number, self.grid, self._descriptions, self._round_number)
        task = Task(key, payload, (grid_file(number, self._drawer.output_format),))
        self._ledger.plan([task], PLANNED_BY_NO_RUN)
        outcome = await run_subtask(task, self._attempt, self._ledger)
        drawn = DrawnGrid(number, self.root / task.outputs[0], payload["grid"], tuple(outcome.provenance["unique_tiles"]))
        return MadeGrid(drawn, outcome.cost, self._tiles.pop(number, None))

    async def _attempt(self, task: Task) -> Outcome:
        """One attempt at a grid: read from disk if an earlier attempt or run saved it, else drawn and
        saved; then judged."""
        key, payload, relative = task.key, task.payload, task.outputs[0]
        number, shape, path = grid_number(key), payload["grid"], self.root / relative
        provenance = {}
        async with self.lane.flight(key):
            if is_valid_image(path):  # drawn by an earlier attempt or run
                data = path.read_bytes()
                self._predictions.saved(key)
                verdict = await judge_grid(self._judge, data, shape, key=key, calls=self._predictions.answers)
            else:
                made = await self._drawer.draw(payload["prompt"], self._source, grid=shape, seed=payload["seed"], key=key)
                data, provenance, self._drawn_cost[number] = made.data, made.provenance, made.cost
                # The judge looks while the file is written and split into tiles (off the event loop); the
                # write ends before the ledger is marked. Once on disk the grid was used, whatever the judge says.
                written = asyncio.ensure_future(asyncio.to_thread(atomic_write_bytes, path, data))
                self._tiles[number] = asyncio.ensure_future(asyncio.to_thread(tile_pngs, data, shape))
                try:
                    verdict = await judge_grid(self._judge, data, shape, key=key, calls=self._predictions.answers)
                finally:
                    await written
                    self._predictions.saved(key)
        if verdict.fallback:
            log.warning("%s: the %s judge found no unique tile; using the corners and centre", key, self._judge.name)
        if self._debug_dir is not None:
            await asyncio.to_thread(atomic_write_bytes, self._debug_dir / relative, data)
        return Outcome((relative,), self._drawn_cost.pop(number, 0.0) + verdict.cost, {
            **provenance, "drawer": self._drawer.name, "judge": self._judge.name,
            "unique_tiles": verdict.tiles, "judge_fallback": verdict.fallback,
        })

    def record(self, number: int) -> dict:
        """Grid ``number``'s ledger record: its payload (prompt, seed, subjects) and what drew it."""
        return self._ledger.task(grid_key(number))


def with_grid_attempts(ledger: Ledger) -> dict:
    """The stats file's fields that count the attempts of the grids with the training images' of
    ``ledger``: a grid's rate limits and dropped connections are the run's."""
    with Ledger(ledger.root, table=GRIDS) as grids:
        drawn, images = grids.totals(), ledger.totals()
    return {"rate_limit_hits": int(images["rate_limit_hits"] + drawn["rate_limit_hits"]),
            "connection_errors": int(images["connection_errors"] + drawn["connection_errors"]),
            "grid_attempts": int(drawn["attempts"])}
