"""Building a run's drawer, judge, upscaler and store from plain choices (CLI flags, constructor arguments).

Remote choices use the Replicate and OpenAI backends (keys from the arguments or the
environment); local ones need no key: FLUX.2 klein draws the grid from a checkpoint folder, the
hash judge picks tiles, Lanczos or a spandrel model upscales, a folder stores, and the captions
come from the grids' descriptions (``caption="gpt"`` asks the OpenAI vision model instead). Backends hold
connections tied to the running event loop, so parts are opened inside it and closed after.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from imggen.backends.captioners import Captioner, DescriptionCaptioner, make_captioner
from imggen.backends.flux2_checkpoint import checkpoint_source
from imggen.backends.grid_drawers import Flux2GridDrawer, GridDrawer, ReplicateGridDrawer
from imggen.backends.openai_vision import price_known as vision_price_known
from imggen.backends.replicate_catalog import replicate_models
from imggen.backends.tile_judges import TileJudge, make_judge
from imggen.backends.upscalers import Upscaler, make_upscaler
from imggen.engine.errors import CannotStart, starting
from imggen.settings import credential, load_settings
from imggen.storage.stores import ImageStore, make_store

log = logging.getLogger("imggen.trainset")


@dataclass
class TrainsetParts:
    """The pluggable pieces of a run; :func:`open_parts` builds them from choices."""

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
class TrainsetChoices:
    judge: str | None = None  # gpt | hash; None: gpt when an OpenAI key is set, else hash
    upscaler: str = "topaz"  # topaz | lanczos | path of a model file (spandrel)
    storage: str | None = None  # s3 | local; None: s3 when AWS_USER_FILES_BUCKET is set, else local
    flux_checkpoint: str | os.PathLike | None = None  # set: FLUX.2 klein draws the grids locally
    flux_size: int = 1024  # side of a locally drawn grid, in pixels
    flux_steps: int | None = None  # None: the checkpoint's preset
    replicate_token: str | None = None  # None: REPLICATE_API_TOKEN
    openai_api_key: str | None = None  # None: OPENAI_API_KEY
    vision_model: str | None = None  # None: the OpenAI backend's default vision model
    output_format: str = "jpg"
    caption: str = "description"  # description | gpt: what the caption after the trigger word comes from
    # Seconds Replicate's create call may hold for a finished result (``Prefer: wait=N``); None: it
    # answers at once with the prediction's id and polling collects it. The id only becomes durable
    # when the call answers, so a kill inside the hold loses the prediction and the rerun pays for it
    # again. Measured with benchmarks/trainset_kill_repay.py (4 kills each, seed latencies / 30):
    # wait 2 repaid 1.00 prediction per kill, no wait 0.00, and a clean 20-image build took the same
    # time either way (4.05 s and 3.89 s), so the default is no hold.
    replicate_wait_s: int | None = None

    @classmethod
    def chosen(cls, *, local: bool = False, judge: str | None = None, upscaler: str | None = None,
               storage: str | None = None, **others) -> "TrainsetChoices":
        """Choices as a person names them (the command's flags, the notebook's parameters): with
        ``local``, each part not named runs on this machine: FLUX.2 klein from ``flux_checkpoint``
        draws the grids, the hash judge, Lanczos upscaling and a local folder."""
        if local and others.get("flux_checkpoint") is None:
            raise CannotStart("local needs a FLUX.2 klein checkpoint: --flux_ckpt PATH, or flux_ckpt in the notebook "
                              "(imggen tiny-checkpoint PATH builds a tiny one)")
        return cls(judge=judge or ("hash" if local else None), upscaler=upscaler or ("lanczos" if local else cls.upscaler),
                   storage=storage or ("local" if local else None), **others)

    def resolved_judge(self) -> str:
        if self.judge is not None:
            return self.judge
        return "gpt" if self.openai_api_key or credential("openai_api_key") else "hash"

    def resolved_storage(self) -> str:
        if self.storage is not None:
            return self.storage
        return "s3" if load_settings().aws_user_files_bucket else "local"


@contextlib.asynccontextmanager
async def open_parts(
    choices: TrainsetChoices, *, user_id: str, actor_id: str, local_root: str | os.PathLike
) -> AsyncIterator[TrainsetParts]:
    """The parts for ``choices``; backends are closed when the block ends."""
    async with contextlib.AsyncExitStack() as stack:
        with starting():  # each part's problem stops the run here, before any grid is paid for
            parts = await _make_parts(stack, choices, user_id=user_id, actor_id=actor_id, local_root=local_root)
        yield parts


async def _make_parts(stack: contextlib.AsyncExitStack, choices: TrainsetChoices, *, user_id: str, actor_id: str,
                      local_root: str | os.PathLike) -> TrainsetParts:
    """Each part ``choices`` name, its backend's closing pushed onto ``stack``."""
    replicate = None
    if choices.flux_checkpoint is None or choices.upscaler == "topaz":
        from imggen.backends.replicate_backend import ReplicateBackend

        if not (choices.replicate_token or credential("replicate_api_token")):
            raise CannotStart("no Replicate token: set REPLICATE_API_TOKEN in the environment or in .env, or run "
                              "every part on this machine (--local --flux_ckpt PATH; local = True in the notebook)")
        replicate = ReplicateBackend(api_token=choices.replicate_token, wait_s=choices.replicate_wait_s)
        stack.push_async_callback(replicate.aclose)
    if choices.flux_checkpoint is not None:
        checkpoint_source(choices.flux_checkpoint)  # a missing checkpoint stops here, before any grid
        drawer = Flux2GridDrawer(Path(choices.flux_checkpoint), size=choices.flux_size,
                                 num_inference_steps=choices.flux_steps)
        stack.push_async_callback(drawer.aclose)
    else:
        drawer = ReplicateGridDrawer(replicate, output_format=choices.output_format)
    judge_name = choices.resolved_judge()
    openai_backend = None
    if "gpt" in (judge_name, choices.caption):
        from imggen.backends.openai_images import OpenAIImageBackend

        if not (choices.openai_api_key or credential("openai_api_key")):  # found now, not after a paid grid
            needs, instead = ("the gpt judge needs", "--judge hash") if judge_name == "gpt" else (
                "gpt captions need", "--caption description")
            raise CannotStart(f"{needs} an OpenAI API key: set OPENAI_API_KEY (or use {instead})")

        openai_backend = OpenAIImageBackend(api_key=choices.openai_api_key)
        stack.push_async_callback(openai_backend.aclose)
    storage = choices.resolved_storage()
    log.info("training set: %s grids, %s judge, %s upscaler, %s storage",
             drawer.name, judge_name, choices.upscaler, storage)
    store = make_store(storage, user_id=user_id, actor_id=actor_id, local_root=local_root)
    await store.check()  # a missing or read-only bucket stops here, before any grid is paid for
    return TrainsetParts(
        drawer=drawer,
        judge=make_judge(judge_name, openai_backend=openai_backend, model=choices.vision_model),
        upscaler=make_upscaler(choices.upscaler, replicate_backend=replicate, output_format=choices.output_format),
        store=store,
        captioner=make_captioner(choices.caption, openai_backend=openai_backend, model=choices.vision_model),
    )
