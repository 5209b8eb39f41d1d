"""The training-set job: N unique, upscaled tiles of generated grids, stored under ``{user_id}/{actor_id}/``.

The run's tasks are the training images ``training-image1`` ... ``training-imageN`` on the
engine runner (retries by error kind, budget, pause/stop, progress, the ledger and its views).
One task claims a unique tile from the :class:`~.tile_pool.TilePool` (which draws and judges
grids in parallel, only as many as needed), upscales it, stores it, and saves a debug copy. Its
paid results are kept on disk before the ledger is marked (grids in ``grids/``, upscales in
``upscales/upscale-{grid}-{tile}.*``), so a rerun for the same actor pays for nothing twice.

Folder of one actor (``work_dir/{user_id}/{actor_id}/``): ``ledger.sqlite`` and the engine's
views and every paid Replicate prediction (see :mod:`.journal`), ``grids/`` (grid images, their
ledger, the slot-to-tile record), ``upscales/``, ``description_rotation.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from imggen.engine.announcer import Announcer
from imggen.engine.control import RunControl
from imggen.engine.errors import ErrorKind, TaskError
from imggen.engine.events import Reporter
from imggen.engine.job import JobFiles, run_job
from imggen.engine.ledger import Ledger
from imggen.engine.retry import Hold
from imggen.engine.stats import money_spent
from imggen.engine.runner import RunnerConfig, RunSummary
from imggen.engine.tasks import Outcome, Task
from imggen.storage.atomic import atomic_write_bytes, is_valid_image
from imggen.storage.lock import folder_lock
from imggen.storage.paths import safe_path

from .descriptions import DescriptionPool, DescriptionRotation
from .drawers import GridDrawer
from .journal import PredictionJournal
from .judges import TileJudge
from .source import load_source
from .stages import StageWatch
from .stores import CONTENT_TYPES, ImageStore
from .tile_pool import ClaimedTile, DrawnGrid, GridPlan, TilePool
from .upscalers import Upscaler

log = logging.getLogger("imggen.trainset")


@dataclass
class TrainsetParts:
    """The pluggable pieces of a run (see :mod:`.parts` for building them from choices)."""

    drawer: GridDrawer
    judge: TileJudge
    upscaler: Upscaler
    store: ImageStore


@dataclass(frozen=True)
class TrainsetOptions:
    target: int = 20  # training images wanted
    grid: int = 3  # tiles per side of each grid
    max_grids: int = 10  # grid attempts per run
    grid_concurrency: int = 4  # grids drawn at once
    upscale_concurrency: int = 24  # training images (upscale + upload) in flight at once
    descriptions: DescriptionPool | str | os.PathLike | None = None  # None: the built-in 63
    budget: float | None = None  # USD cap for this run
    retry_failed: bool = False  # also retry training images that failed permanently before
    max_attempts: int = 3  # per training image per run, for transient errors
    backoff_base_s: float = 1.0

    def __post_init__(self) -> None:
        if self.target < 1:
            raise ValueError("the target must be at least one image")
        if self.grid < 2:
            raise ValueError("a grid needs at least 2 tiles per side")
        if self.max_grids < 1 or self.grid_concurrency < 1 or self.upscale_concurrency < 1:
            raise ValueError("max_grids, grid_concurrency and upscale_concurrency must be at least 1")


@dataclass(frozen=True)
class TrainingImage:
    slot: int
    grid: int
    tile: int
    url: str
    path: Path  # the upscaled image kept in the run folder


@dataclass(frozen=True)
class TrainsetResult:
    images: list[TrainingImage]
    total_grids_generated: int
    summary: RunSummary
    job_root: Path
    grids: list[DrawnGrid] = field(default_factory=list)
    money: dict = field(default_factory=dict)  # billed, used and wasted USD of the run folder, in all runs

    def cost_line(self) -> str:
        """``billed $0.20 (used $0.16, wasted $0.04)``: what Replicate billed, and for what."""
        money = self.money
        return (f"billed ${money.get('billed_cost_usd', 0.0):.2f} (used ${money.get('used_cost_usd', 0.0):.2f}, "
                f"wasted ${money.get('wasted_cost_usd', 0.0):.2f})")

    @property
    def training_image_urls(self) -> list[str]:
        return [image.url for image in self.images]

    def as_seed_dict(self) -> dict:
        """The seed's return value."""
        return {
            "training_image_urls": self.training_image_urls,
            "total_grids_generated": self.total_grids_generated,
            "total_training_images": len(self.images),
        }


def job_root(work_dir: str | os.PathLike, user_id: str, actor_id: str) -> Path:
    """The run folder of one actor; the untrusted ids are sanitized."""
    return safe_path(work_dir, user_id, actor_id)


def slot_key(slot: int) -> str:
    return f"training-image{slot}"


class TrainingImageWork:
    """The work of one training image: a unique tile, upscaled, stored."""

    def __init__(self, root: Path, pool: TilePool, upscaler: Upscaler, store: ImageStore,
                 journal: PredictionJournal, debug_dir: Path | None) -> None:
        self.root = root
        self.pool = pool
        self.upscaler = upscaler
        self.store = store
        self.journal = journal
        self.debug_dir = debug_dir

    async def __call__(self, task: Task) -> Outcome:
        slot = task.payload["slot"]
        while True:
            claimed = await self.pool.claim(slot)
            try:
                relative, data, cost = await self._upscaled(claimed)
                break
            except TaskError as error:
                if error.kind is not ErrorKind.PERMANENT:
                    raise
                log.warning("%s refused for %s (%s); taking another tile", claimed.ref.key, task.key, error.message)
                self.pool.reject(slot, claimed.ref)
        extension = self.upscaler.output_format
        name = f"{task.key}.{extension}"
        stored = await self.store.put(name, data, CONTENT_TYPES[extension])
        if self.debug_dir is not None:
            await asyncio.to_thread(atomic_write_bytes, self.debug_dir / name, data)
        ref = claimed.ref
        return Outcome(
            outputs=(relative,),
            cost=cost + self.pool.bill(ref),
            provenance={"grid": ref.grid, "tile": ref.tile, "url": stored.url, "upscaler": self.upscaler.name},
        )

    async def _upscaled(self, claimed: ClaimedTile) -> tuple[str, bytes, float]:
        relative = f"upscales/{claimed.ref.key}.{self.upscaler.output_format}"
        path = self.root / relative
        if is_valid_image(path):  # saved by an earlier attempt or run
            data, cost = path.read_bytes(), 0.0
        else:
            made = await self.upscaler.upscale(claimed.image, key=claimed.ref.key, journal=self.journal)
            await asyncio.to_thread(atomic_write_bytes, path, made.data)  # fsync off the event loop
            data, cost = made.data, made.cost
        self.journal.saved(claimed.ref.key)
        return relative, data, cost


async def run_trainset(
    source: str | os.PathLike,
    user_id: str,
    actor_id: str,
    *,
    parts: TrainsetParts,
    work_dir: str | os.PathLike,
    options: TrainsetOptions = TrainsetOptions(),
    debug_dir: str | os.PathLike | None = None,
    control: RunControl | None = None,
    reporters: Sequence[Reporter] = (),
    handle_signals: bool = False,
) -> TrainsetResult:
    """Build (or continue) the training set of one actor from ``source`` (https URL, path or data URI)."""
    root = job_root(work_dir, user_id, actor_id)
    source_bytes = await load_source(source)
    debug = Path(debug_dir) if debug_dir is not None else None
    control = control or RunControl()
    config = RunnerConfig(
        concurrency=min(options.target, options.upscale_concurrency),
        max_attempts=options.max_attempts,
        backoff_base_s=options.backoff_base_s,
        budget=options.budget,
        retry_failed=options.retry_failed,
    )
    journal = PredictionJournal(root, hold=Hold(), create_retry=config.retry_policy)
    announcer = Announcer()
    stages = StageWatch(announcer.stage)  # the displays show which stages run
    pool = TilePool(
        root / "grids",
        source_bytes,
        drawer=stages.counted(parts.drawer, "draw", "draw"),
        judge=stages.counted(parts.judge, "unique_tiles", "judge"),
        rotation=DescriptionRotation(DescriptionPool.load(options.descriptions), root / "description_rotation.json"),
        plan=GridPlan(options.grid, options.max_grids, options.grid_concurrency),
        journal=journal,
        retry=config.retry_policy,
        debug_dir=debug,
    )
    work = TrainingImageWork(root, pool, stages.counted(parts.upscaler, "upscale", "upscale"),
                             stages.counted(parts.store, "put", "upload"), journal, debug)
    tasks = [Task(slot_key(slot), {"slot": slot}) for slot in range(1, options.target + 1)]
    summary: RunSummary | None = None
    with contextlib.closing(journal), folder_lock(pool.root):
        pool.open()
        try:
            summary = await run_job(JobFiles(root), tasks, work, config=config, control=control,
                                    reporters=[pool, *reporters], handle_signals=handle_signals, announcer=announcer)
        finally:
            abandon = summary is None or summary.state == "fatal" or control.immediate
            await pool.close(cancel=abandon)
    return collect_result(root, options.target, summary, pool)


def collect_result(root: Path, target: int, summary: RunSummary, pool: TilePool) -> TrainsetResult:
    """The finished training images of the run folder, in slot order."""
    images = []
    with Ledger(root) as ledger:
        for slot in range(1, target + 1):
            record = ledger.task(slot_key(slot))
            if record is None or record["status"] != "done":
                continue
            found = record["provenance"]
            images.append(TrainingImage(slot, found["grid"], found["tile"], found["url"], root / record["outputs"][0]))
        money = money_spent(ledger)
    return TrainsetResult(images, pool.grids_generated, summary, root, pool.drawn_grids(), money)
