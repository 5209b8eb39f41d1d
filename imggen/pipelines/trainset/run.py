"""The training-set job: N unique, upscaled tiles of generated grids, stored under ``{user_id}/{actor_id}/``.

:func:`~.plan.plan_trainset` turns the options into the training-image tasks; :func:`run_trainset`
runs them on the engine runner. One task (:mod:`.work`) claims a unique tile from the
:class:`~.tile_pool.TilePool`, which has grids drawn and judged by :mod:`.grids` only as many as
needed, then upscales it and stores it. Grids and upscales in flight each follow their own target
(:mod:`imggen.engine.lanes`), and the progress line shows both. Every paid result is kept on disk
before the ledger is marked, so a rerun for the same actor pays for nothing twice.

The actor's training set is one scope of :mod:`~imggen.engine.rounds`: its ledger keeps the settings
it is made with (grid drawer, judge, upscaler, storage, grid), and a rerun with other settings
is refused unless ``new_round`` is set. Round N > 0 has a run folder of its own, ``roundN/`` in the
actor's folder (same layout), so it draws new grids and makes new images and reuses nothing paid
for with other settings; finished images go to the same stored names, replacing the earlier round's.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from imggen.backends.image_download import read_image_source
from imggen.backends.replicate_predictions import ReplicatePredictions
from imggen.engine.announcer import Announcer
from imggen.engine.budget import Budget
from imggen.engine.control import RunControl
from imggen.engine.errors import CannotStart, starting
from imggen.engine.events import Reporter
from imggen.engine.job import JobFiles, run_job
from imggen.engine.lanes import Lane, LanesShown
from imggen.engine.ledger import Ledger
from imggen.engine.limiter import RequestLimiter
from imggen.engine.pacing import Hold
from imggen.engine.paid_calls import unpriced_note
from imggen.engine.runner import RunnerConfig, RunSummary
from imggen.engine.stages import StageWatch
from imggen.engine.stats import money_spent
from imggen.storage.lock import folder_lock

from .captions import TrainingCaptions
from .descriptions import DescriptionPool
from .grids import DrawnGrid, GridMaker, with_grid_attempts
from .layout import GRIDS, SCOPE, STAGES, choose_run_folder, job_root
from .parts import TrainsetParts
from .plan import TrainsetOptions, plan_trainset, slot_key
from .tile_pool import TilePool
from .work import TrainingImageWork


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


def output_settings(parts: TrainsetParts, options: TrainsetOptions) -> dict:
    """What defines an actor's training images: how grids are drawn, judged and upscaled, where the
    images are stored and the grid; not the target (a bigger one later adds images to the same set),
    concurrency, budget or grid attempts."""
    return {**parts.drawer.settings, **parts.judge.settings, **parts.upscaler.settings,
            "storage": parts.store.location, "grid": options.grid}


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
    with starting():  # nothing is sent before these: a problem here is a start-up error
        tasks = plan_trainset(options)
        actor_root = job_root(work_dir, user_id, actor_id)
        root, this_round = choose_run_folder(actor_root, output_settings(parts, options), new_round=options.new_round)
        source_bytes = await read_image_source(source)
    debug = Path(debug_dir) if debug_dir is not None else None
    control = control or RunControl()
    config = RunnerConfig(concurrency=options.slots, budget=options.budget, retry_failed=options.retry_failed)
    budget = Budget(options.budget)  # the runner's, and every paid call's
    predictions = ReplicatePredictions(root, hold=Hold(), creates=RequestLimiter(options.creates_per_min),
                                create_retry=config.retry_policy, cap=budget, control=control)
    announcer = Announcer()
    if hasattr(parts.drawer, "tell_status"):  # a local model says when it loads
        parts.drawer.tell_status(announcer.say)
    stages = StageWatch(STAGES, announcer.stage)  # the displays show which stages run
    maker = GridMaker(
        root / GRIDS, source_bytes, drawer=stages.counted(parts.drawer, "draw", "draw"),
        judge=stages.counted(parts.judge, "unique_tiles", "judge"),
        descriptions=DescriptionPool.load(options.descriptions),
        grid=options.grid, predictions=predictions, debug_dir=debug, round_number=this_round.number,
        lane=Lane("grids", options.grid_concurrency, predictions, paced=parts.drawer.paid_model is not None),
    )
    pool = TilePool(maker, max_grids=options.max_grids, dup_threshold=options.dup_threshold)
    captions = TrainingCaptions(root, parts.captioner, options.trigger_word, calls=predictions.answers)
    work = TrainingImageWork(root, pool, stages.counted(parts.upscaler, "upscale", "upscale"),
                             stages.counted(parts.store, "put", "upload"), predictions, debug,
                             Lane("upscales", options.upscale_concurrency, predictions,
                                  paced=parts.upscaler.paid_model is not None),  # Replicate creates are paced
                             captions=captions,
                             drawer_queue=getattr(parts.drawer, "withdraw_waiting", None))
    shown = [LanesShown(reporter, [maker.lane, work.lane], predictions.creates) for reporter in reporters]
    summary: RunSummary | None = None
    later_round = folder_lock(actor_root) if root != actor_root else contextlib.nullcontext()  # one run per actor
    with contextlib.closing(predictions), predictions.kept(), later_round, folder_lock(maker.root):
        pool.open()
        try:
            summary = await run_job(JobFiles(root, stats_extra=with_grid_attempts), tasks, work,
                                    config=config, control=control, reporters=[pool, *shown],
                                    handle_signals=handle_signals, rounds={SCOPE: this_round}, announcer=announcer,
                                    budget=budget)
        finally:
            abandon = summary is None or summary.state == "fatal" or control.immediate
            await pool.close(cancel=abandon)
        await captions.store_metadata(parts.store, [task.key for task in tasks])
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
            images.append(TrainingImage(slot, found["grid"], found["tile"], found["url"], root / record["outputs"][0],
                                        found.get("caption")))
        money = money_spent(ledger)
    return TrainsetResult(images, pool.grids_generated, summary, root, pool.drawn_grids(), money)
