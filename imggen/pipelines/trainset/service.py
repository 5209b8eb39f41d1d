"""The seed's Python API: ``TrainingDataGenerator``, synchronous as the seed's was (its
``ReplicateService`` is :mod:`imggen.backends.replicate_service`).

``TrainingDataGenerator().generate_training_data(source_image_url, user_id, actor_id)`` returns
the seed's dict and works from scripts and from notebook cells alike (see :mod:`imggen.engine.sync_call`). Its
attributes ``target_training_images``, ``max_generation_attempts`` and ``batch_size`` keep the
seed's meaning; everything the seed listed as a future enhancement is a constructor option.
``arun`` is the same job as a coroutine, with run control and progress reporters.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from imggen.engine.control import RunControl
from imggen.engine.events import Event, Reporter, TaskFinished
from imggen.engine.sync_call import run_sync

from .descriptions import DescriptionPool
from .layout import WORK_DIR
from .parts import TrainsetChoices, open_parts
from .plan import DEFAULTS, TrainsetOptions
from .run import TrainsetResult, run_trainset

log = logging.getLogger("imggen.trainset")


class BatchLog:
    """The seed's progress logging: a line for every ``batch_size`` finished training images."""

    def __init__(self, batch_size: int, target: int) -> None:
        self.batch_size = max(1, batch_size)
        self.target = target
        self.finished = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, TaskFinished) and event.status != "failed":
            self.finished += 1
            if self.finished % self.batch_size == 0 or self.finished == self.target:
                batch = (self.finished - 1) // self.batch_size + 1
                log.info("batch %d done: %d/%d training images", batch, self.finished, self.target)


class TrainingDataGenerator:
    """Turns one source image into ``target_training_images`` diverse, upscaled training images."""

    def __init__(
        self,
        replicate_token: str | None = None,
        openai_api_key: str | None = None,
        debug_dir: str | os.PathLike | None = None,
        *,
        work_dir: str | os.PathLike = WORK_DIR,
        grid: int = DEFAULTS.grid,
        judge: str | None = None,
        upscaler: str | None = None,
        storage: str | None = None,
        local: bool = False,
        descriptions: DescriptionPool | str | os.PathLike | None = None,
        flux_checkpoint: str | os.PathLike | None = None,
        flux_size: int = TrainsetChoices.flux_size,
        grid_concurrency: int | str = DEFAULTS.grid_concurrency,
        upscale_concurrency: int | str = DEFAULTS.upscale_concurrency,
        rpm: float | None = None,
        vision_model: str | None = None,
        output_format: str = TrainsetChoices.output_format,
        trigger_word: str | None = None,
        caption: str = TrainsetChoices.caption,
        dup_threshold: int = DEFAULTS.dup_threshold,
        new_round: bool = False,
        budget: float | None = None,
        allow_unpriced: bool = False,
    ) -> None:
        """Keys default to REPLICATE_API_TOKEN and OPENAI_API_KEY. ``work_dir`` keeps each actor's
        run folder (ledger, grids, upscales) and, with ``storage="local"``, the finished images.
        ``judge``: gpt or hash; ``upscaler``: topaz (None), lanczos or a model file; ``storage``: s3
        or local (None picks gpt/s3 when their keys are set); ``flux_checkpoint`` draws grids locally;
        ``local`` runs every part not named on this machine (see ``TrainsetChoices.chosen``).
        ``grid_concurrency`` and ``upscale_concurrency``: a number pins what is in flight; "auto"
        follows the create pace (``rpm`` creates per minute, default Replicate's documented limit) x
        the observed latency.
        Captions start with ``trigger_word``, then the tile's description (``caption="description"``)
        or the vision model's (``"gpt"``); a tile within ``dup_threshold`` hash bits of one already
        kept for the actor is refused before its upscale.
        ``new_round`` makes the actor's set again, also with settings other than its earlier runs'
        (which are refused without it). ``budget`` caps what each run is billed, in US dollars; with a
        model whose price is unknown (Topaz) it needs ``allow_unpriced``, and then caps the priced calls.
        """
        self.target_training_images = DEFAULTS.target
        self.max_generation_attempts = DEFAULTS.max_grids
        self.batch_size = 3
        self.debug_dir = Path(debug_dir) if debug_dir is not None else None
        self.work_dir = Path(work_dir)
        self._options = dict(grid=grid, descriptions=descriptions, grid_concurrency=grid_concurrency,
                             upscale_concurrency=upscale_concurrency, rpm=rpm, trigger_word=trigger_word,
                             dup_threshold=dup_threshold, new_round=new_round, budget=budget,
                             allow_unpriced=allow_unpriced)
        self.choices = TrainsetChoices.chosen(
            local=local, judge=judge, upscaler=upscaler, storage=storage, flux_checkpoint=flux_checkpoint,
            flux_size=flux_size,
            replicate_token=replicate_token, openai_api_key=openai_api_key, vision_model=vision_model,
            output_format=output_format, caption=caption,
        )

    def options(self) -> TrainsetOptions:
        """The run's options: the constructor's, with the seed's attributes as they are now (checked here)."""
        return TrainsetOptions(target=self.target_training_images, max_grids=self.max_generation_attempts,
                               **self._options)

    async def arun(
        self,
        source_image_url: str,
        user_id: str,
        actor_id: str,
        *,
        control: RunControl | None = None,
        reporters: Sequence[Reporter] = (),
        handle_signals: bool = False,
    ) -> TrainsetResult:
        """The job as a coroutine; rerunning it for the same actor continues where it stopped."""
        options = self.options()
        async with open_parts(self.choices, user_id=user_id, actor_id=actor_id, local_root=self.work_dir) as parts:
            return await run_trainset(
                source_image_url, user_id, actor_id, parts=parts, work_dir=self.work_dir, options=options,
                debug_dir=self.debug_dir, control=control,
                reporters=[BatchLog(self.batch_size, options.target), *reporters], handle_signals=handle_signals,
            )

    def generate_training_data(self, source_image_url: str, user_id: str, actor_id: str) -> dict:
        """The seed's call: ``{"training_image_urls", "total_grids_generated", "total_training_images"}``."""
        result = run_sync(lambda: self.arun(source_image_url, user_id, actor_id))
        if len(result.images) < self.target_training_images:
            log.warning("Only generated %d/%d images (%s); rerun to continue", len(result.images),
                        self.target_training_images, result.summary.message or result.summary.state)
        return result.as_seed_dict()
