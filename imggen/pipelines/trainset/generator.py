"""The training-set job: N unique, upscaled tiles of generated grids, stored under ``{user_id}/{actor_id}/``.

The run's tasks are the training images ``training-image1`` ... ``training-imageN`` on the
engine runner (retries by error kind, budget, pause/stop, progress, the ledger and its views).
One task claims a unique tile from the :class:`~.tile_pool.TilePool` (which draws and judges
grids in parallel, only as many as needed), upscales it, stores it, and saves a debug copy. Grids
and upscales in flight each follow their own target (:mod:`.lanes`: a number, or ``auto``: the
create pace x the observed latency); the progress line shows both. Its
paid results are kept on disk before the ledger is marked (grids in ``grids/``, upscales in
``upscales/upscale-{grid}-{tile}.*``), so a rerun for the same actor pays for nothing twice.

Folder of one actor (``work_dir/{user_id}/{actor_id}/``): ``ledger.sqlite`` and the engine's
views and every paid Replicate prediction (see :mod:`.journal`), ``grids/`` (grid images, their
ledger, the slot-to-tile record), ``upscales/``, ``description_rotation.json``, ``kept_tiles.json``
(the hash of every tile made into a training image, see :mod:`.duplicates`) and ``captions/``
(see :mod:`.captions`). Beside each stored image goes its caption, ``training-imageN.txt``.

The actor's training set is one scope of :mod:`~imggen.engine.rounds`: its ledger keeps the settings
it is made with (grid drawer, judge, upscaler, storage, grid), and a rerun with other settings
is refused unless ``new_round`` is set. Round N > 0 has a run folder of its own, ``roundN/`` in the
actor's folder (same layout), so it draws new grids and makes new images and reuses nothing paid
for with other settings; finished images go to the same stored names, replacing the earlier round's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from imggen.backends.openai_vision import price_known as vision_price_known
from imggen.backends.replicate_catalog import replicate_create_limit_per_min, replicate_models
from imggen.engine.announcer import Announcer
from imggen.engine.concurrency import AUTO
from imggen.engine.control import RunControl
from imggen.engine.errors import CannotStart, ErrorKind, TaskError
from imggen.engine.events import Event, Reporter
from imggen.engine.job import JobFiles, run_job
from imggen.engine.ledger import Ledger, recorded_rounds
from imggen.engine.limiter import RequestLimiter
from imggen.engine.paid_calls import money as paid_money
from imggen.engine.retry import Hold
from imggen.engine.rounds import Round, choose_round
from imggen.engine.stats import money_spent
from imggen.engine.runner import RunnerConfig, RunSummary
from imggen.engine.tasks import Outcome, Task
from imggen.storage.atomic import atomic_write_bytes, is_valid_image
from imggen.storage.lock import folder_lock
from imggen.storage.paths import safe_path

from .captions import TEXT_TYPE, Captioner, DescriptionCaptioner, TrainingCaptions, caption_name
from .descriptions import DescriptionPool, DescriptionRotation
from .drawers import GridDrawer
from .duplicates import DEFAULT_DUP_THRESHOLD, KEPT_TILES, KeptTiles
from .journal import PredictionJournal
from .judges import TileJudge
from .lanes import CEILING, Lane, checked_concurrency
from .source import load_source
from .stages import StageWatch
from .stores import CONTENT_TYPES, ImageStore
from .tile_pool import ClaimedTile, DrawnGrid, GridPlan, TilePool
from .upscalers import TopazUpscaler, Upscaler

log = logging.getLogger("imggen.trainset")


@dataclass
class TrainsetParts:
    """The pluggable pieces of a run (see :mod:`.parts` for building them from choices)."""

    drawer: GridDrawer
    judge: TileJudge
    upscaler: Upscaler
    store: ImageStore
    captioner: Captioner = field(default_factory=DescriptionCaptioner)

    def unpriced_models(self) -> list[str]:
        """The Replicate and vision models this run would pay for whose price the catalog says is unknown."""
        paid = (self.drawer.paid_model, self.upscaler.paid_model)
        asked = sorted({self.judge.vision_model, self.captioner.vision_model} - {None})
        return ([model for model in paid if model is not None and not replicate_models()[model].price_known]
                + [model for model in asked if not vision_price_known(model)])


@dataclass(frozen=True)
class TrainsetOptions:
    target: int = 20  # training images wanted
    grid: int = 3  # tiles per side of each grid
    max_grids: int = 10  # grid attempts per run
    grid_concurrency: int | str = AUTO  # grids drawn at once: a number, or "auto" (see .lanes)
    upscale_concurrency: int | str = AUTO  # upscales in flight at once: a number, or "auto"
    rpm: float | None = None  # Replicate creates per minute: the account's limit (None: Replicate's documented one)
    descriptions: DescriptionPool | str | os.PathLike | None = None  # None: the built-in 63
    budget: float | None = None  # USD cap for this run
    allow_unpriced: bool = False  # run with a budget although a model's price is unknown (it counts $0 there)
    retry_failed: bool = False  # also retry training images that failed permanently before
    trigger_word: str | None = None  # starts every caption
    dup_threshold: int = DEFAULT_DUP_THRESHOLD  # hash bits within which a tile repeats a kept one
    new_round: bool = False  # make the set again, also with other settings than the actor's (a new round)
    max_attempts: int = 3  # per training image per run, for transient errors
    backoff_base_s: float = 1.0

    def __post_init__(self) -> None:
        if self.target < 1:
            raise ValueError("the target must be at least one image")
        if self.grid < 2:
            raise ValueError("a grid needs at least 2 tiles per side")
        if self.max_grids < 1:
            raise ValueError("max_grids must be at least 1")
        checked_concurrency("grid_concurrency", self.grid_concurrency)
        checked_concurrency("upscale_concurrency", self.upscale_concurrency)
        if self.rpm is not None and not self.rpm > 0:
            raise ValueError("rpm must be positive")

    @property
    def creates_per_min(self) -> float:
        """The create pace: the user's ``rpm``, else Replicate's documented limit. Replicate sends no
        limit header, and accounts differ (lower while credit is low, higher on request), so the
        user's figure, when given, is the one that knows the account."""
        return self.rpm if self.rpm is not None else replicate_create_limit_per_min()

    @property
    def slots(self) -> int:
        """Training images in flight: a pinned upscale count, else as many as auto may ever upscale."""
        pinned = self.upscale_concurrency if self.upscale_concurrency != AUTO else CEILING
        return min(self.target, pinned)


@dataclass(frozen=True)
class TrainingImage:
    slot: int
    grid: int
    tile: int
    url: str
    path: Path  # the upscaled image kept in the run folder
    caption: str | None = None  # the text of training-imageN.txt


@dataclass(frozen=True)
class TrainsetResult:
    images: list[TrainingImage]
    total_grids_generated: int
    summary: RunSummary
    job_root: Path
    grids: list[DrawnGrid] = field(default_factory=list)
    money: dict = field(default_factory=dict)  # billed, used and wasted USD of the run folder, in all runs

    def cost_line(self) -> str:
        """``billed $0.20 (used $0.16, wasted $0.04)``: what Replicate billed, and for what, plus the
        calls whose price is unknown (``and 20 topazlabs/image-upscale calls at an unknown price``)."""
        money = self.money
        line = (f"billed ${money.get('billed_cost_usd', 0.0):.2f} (used ${money.get('used_cost_usd', 0.0):.2f}, "
                f"wasted ${money.get('wasted_cost_usd', 0.0):.2f})")
        return line + unpriced_note(money, lead=" and ")

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


def unpriced_note(money: dict, *, lead: str) -> str:
    """``lead`` + ``20 topazlabs/image-upscale and 3 gpt-4.1-mini calls at an unknown price``, or "" when
    every call had a price."""
    if not money.get("unpriced_calls"):
        return ""
    counted = " and ".join(f"{count} {model}" for model, count in money["unpriced_by_model"].items())
    return f"{lead}{counted} calls at an unknown price"


def job_root(work_dir: str | os.PathLike, user_id: str, actor_id: str) -> Path:
    """The run folder of one actor; the untrusted ids are sanitized."""
    return safe_path(work_dir, user_id, actor_id)


SCOPE = "training set"  # the one scope of rounds in an actor's run folder


def output_settings(parts: TrainsetParts, options: TrainsetOptions) -> dict:
    """What defines an actor's training images: how grids are drawn, judged and upscaled, where the
    images are stored and the grid; not the target (a bigger one later adds images to the same set),
    concurrency, budget or grid attempts."""
    return {**parts.drawer.settings, **parts.judge.settings, **parts.upscaler.settings,
            "storage": parts.store.location, "grid": options.grid}


def choose_run_folder(root: Path, settings: dict, *, new_round: bool) -> tuple[Path, Round]:
    """The run folder of the round this run works in (``root`` for round 0, ``root/roundN`` after)
    and the round; raises :class:`~imggen.engine.rounds.SettingsChanged` if the settings differ."""
    numbers = [0, *(int(path.name.removeprefix("round")) for path in root.glob("round*")
                    if path.is_dir() and path.name.removeprefix("round").isdigit())]
    recorded = {number: recorded_rounds(round_folder(root, number)).get(SCOPE) for number in numbers}
    latest = max(number for number in numbers if number == 0 or recorded[number])  # one never started is none
    this_round = choose_round(f"the training set of {root}", recorded[latest], settings, new_round=new_round)
    return round_folder(root, this_round.number), this_round


def round_folder(root: Path, number: int) -> Path:
    return root if number == 0 else root / f"round{number}"


def slot_key(slot: int) -> str:
    return f"training-image{slot}"


class TrainingImageWork:
    """The work of one training image: a unique tile, upscaled, stored."""

    def __init__(self, root: Path, pool: TilePool, upscaler: Upscaler, store: ImageStore,
                 journal: PredictionJournal, debug_dir: Path | None, lane: Lane, *, kept: KeptTiles,
                 captions: TrainingCaptions) -> None:
        self.root = root
        self.pool = pool
        self.lane = lane  # the upscales in flight
        self.kept = kept
        self.captions = captions
        self.upscaler = upscaler
        self.store = store
        self.journal = journal
        self.debug_dir = debug_dir

    async def __call__(self, task: Task) -> Outcome:
        slot = task.payload["slot"]
        while True:
            claimed = await self.pool.claim(slot)
            twin = await self.kept.admit(claimed.ref.key, claimed.image)
            if twin is not None:  # refused before its upscale: nothing is paid for it
                log.info("%s repeats the kept tile %s; taking another tile for %s", claimed.ref.key, twin, task.key)
                self.pool.reject(slot, claimed.ref)
                continue
            try:
                relative, data, cost = await self._upscaled(claimed)
                break
            except TaskError as error:
                if error.kind is not ErrorKind.PERMANENT:
                    raise
                log.warning("%s refused for %s (%s); taking another tile", claimed.ref.key, task.key, error.message)
                self.kept.forget(claimed.ref.key)
                self.pool.reject(slot, claimed.ref)
        ref = claimed.ref
        caption = await self.captions.caption(ref.key, ref.grid, ref.tile, claimed.image)
        extension = self.upscaler.output_format
        name = f"{task.key}.{extension}"
        stored = await self.store.put(name, data, CONTENT_TYPES[extension])
        await self.store.put(caption_name(name), caption.encode("utf-8"), TEXT_TYPE)
        if self.debug_dir is not None:
            await asyncio.to_thread(atomic_write_bytes, self.debug_dir / name, data)
        return Outcome(
            outputs=(relative,),
            cost=cost + self.pool.bill(ref) + self.journal.answers.bill(ref.key),
            provenance={"grid": ref.grid, "tile": ref.tile, "url": stored.url, "upscaler": self.upscaler.name,
                        "caption": caption},
        )

    async def _upscaled(self, claimed: ClaimedTile) -> tuple[str, bytes, float]:
        relative = f"upscales/{claimed.ref.key}.{self.upscaler.output_format}"
        path = self.root / relative
        if is_valid_image(path):  # saved by an earlier attempt or run
            data, cost = path.read_bytes(), 0.0
        else:
            async with self.lane.flight(claimed.ref.key):
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
    unpriced = parts.unpriced_models()
    if options.budget is not None and unpriced and not options.allow_unpriced:
        raise CannotStart(f"{', '.join(unpriced)} has no known price, so --budget cannot cap it; add --allow-unpriced "
                          "to cap only the priced calls, or choose free parts (e.g. --upscaler lanczos, --judge hash)")
    actor_root = job_root(work_dir, user_id, actor_id)
    root, this_round = choose_run_folder(actor_root, output_settings(parts, options), new_round=options.new_round)
    source_bytes = await load_source(source)
    debug = Path(debug_dir) if debug_dir is not None else None
    control = control or RunControl()
    config = RunnerConfig(
        concurrency=options.slots,
        max_attempts=options.max_attempts,
        backoff_base_s=options.backoff_base_s,
        budget=options.budget,
        retry_failed=options.retry_failed,
    )
    journal = PredictionJournal(root, hold=Hold(), creates=RequestLimiter(options.creates_per_min),
                                create_retry=config.retry_policy)
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
    captions = TrainingCaptions(root, parts.captioner, options.trigger_word, calls=journal.answers)
    work = TrainingImageWork(root, pool, stages.counted(parts.upscaler, "upscale", "upscale"),
                             stages.counted(parts.store, "put", "upload"), journal, debug,
                             Lane("upscales", options.upscale_concurrency, journal,
                                  paced=isinstance(parts.upscaler, TopazUpscaler)),
                             kept=KeptTiles(root / KEPT_TILES, threshold=options.dup_threshold), captions=captions)
    shown = [PartsShown(reporter, [pool.lane, work.lane], journal.creates) for reporter in reporters]
    tasks = [Task(slot_key(slot), {"slot": slot}) for slot in range(1, options.target + 1)]
    summary: RunSummary | None = None
    started = time.time()
    later_round = folder_lock(actor_root) if root != actor_root else contextlib.nullcontext()  # one run per actor
    with contextlib.closing(journal), later_round, folder_lock(pool.root):
        pool.open()
        try:
            summary = await run_job(JobFiles(root), tasks, work, config=config, control=control,
                                    reporters=[pool, *shown], handle_signals=handle_signals,
                                    rounds={SCOPE: this_round}, announcer=announcer)
        finally:
            abandon = summary is None or summary.state == "fatal" or control.immediate
            await pool.close(cancel=abandon)
        await captions.store_metadata(parts.store, [task.key for task in tasks])
    return collect_result(root, options.target, summary, pool, started)


class PartsShown:
    """A reporter that sees each event's progress with the grids and upscales in flight, and the create
    limit once a create has been paced by it (a local drawer and upscaler create nothing)."""

    def __init__(self, reporter: Reporter, lanes: list[Lane], creates: RequestLimiter) -> None:
        self._reporter, self._lanes, self._creates = reporter, lanes, creates

    def __call__(self, event: Event) -> None:
        limit = self._creates.limit
        paced = limit is not None and any(lane.target.rate_per_s is not None for lane in self._lanes)
        progress = event.progress.evolve(parts=tuple(lane.shown() for lane in self._lanes),
                                         limit_per_min=limit * 60.0 / self._creates.period_s if paced else None)
        self._reporter(dataclasses.replace(event, progress=progress))


def collect_result(root: Path, target: int, summary: RunSummary, pool: TilePool, started: float) -> TrainsetResult:
    """The finished training images of the run folder, in slot order. The summary's money is what
    was billed since ``started`` (this run), failed tasks' grids and upscales included."""
    images = []
    with Ledger(root) as ledger:
        for slot in range(1, target + 1):
            record = ledger.task(slot_key(slot))
            if record is None or record["status"] != "done":
                continue
            found = record["provenance"]
            images.append(TrainingImage(slot, found["grid"], found["tile"], found["url"], root / record["outputs"][0],
                                        found.get("caption")))
        money = money_spent(ledger)
        with contextlib.closing(sqlite3.connect(ledger.path)) as db:
            this_run = paid_money(db, since=started)
    if this_run is not None:
        summary = dataclasses.replace(summary, progress=summary.progress.evolve(spent=this_run["billed_cost_usd"]),
                                      unpriced=unpriced_note(this_run, lead=""))
    return TrainsetResult(images, pool.grids_generated, summary, root, pool.drawn_grids(), money)
