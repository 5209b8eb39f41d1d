"""What one training image does: claim a unique tile, upscale it, caption it, store both (the image
stamped with its provenance, :mod:`imggen.storage.provenance`).

The upscale is saved in the run folder (``upscales/``) before the task is marked done, so a rerun
pays for it once; a tile that repeats one already kept for the actor is refused before its
upscale (nothing is paid for it), and a tile whose upscale is refused for good is replaced by the next.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

from imggen.backends.replicate_predictions import ReplicatePredictions
from imggen.backends.upscalers import Upscaler
from imggen.engine.errors import ErrorKind, TaskError
from imggen.engine.lanes import Lane
from imggen.engine.tasks import Outcome, Task
from imggen.storage.atomic import atomic_write_bytes, is_valid_image
from imggen.storage.provenance import stamped
from imggen.storage.stores import CONTENT_TYPES, ImageStore

from .captions import TEXT_TYPE, TrainingCaptions, caption_name
from .layout import stored_name, upscale_file
from .tile_book import TileRef
from .tile_pool import ClaimedTile, TilePool

log = logging.getLogger("imggen.trainset")


@dataclass(eq=False)
class TrainingImageWork:
    """The engine's work function for the training images: ``await work(task) -> Outcome``."""

    root: Path
    pool: TilePool
    upscaler: Upscaler
    store: ImageStore
    predictions: ReplicatePredictions
    debug_dir: Path | None
    lane: Lane  # the upscales in flight
    captions: TrainingCaptions
    drawer_queue: Callable[[], None] | None = None  # gives back the grids a local drawer has not begun

    def withdraw_waiting(self) -> None:
        """Pause and Stop: the images still waiting for a tile, and the grids a local model has not
        begun, are given back (each raises Withdrawn); grids being drawn finish and keep their tiles."""
        self.pool.withdraw_waiters()
        if self.drawer_queue is not None:
            self.drawer_queue()

    async def __call__(self, task: Task) -> Outcome:
        slot = task.payload["slot"]
        while True:
            claimed = await self.pool.claim(slot)
            twin = await self.pool.kept.admit(claimed.ref.key, claimed.image)
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
                self.pool.kept.forget(claimed.ref.key)
                self.pool.reject(slot, claimed.ref)
        ref = claimed.ref
        grid = self.pool.maker.record(ref.grid)
        subject = grid["payload"]["subjects"][ref.tile]["text"]
        caption = await self.captions.caption(ref.key, subject, claimed.image)
        extension = self.upscaler.output_format
        name = stored_name(task.key, extension)
        data = self._stamped(data, task, ref, grid, subject, caption)
        stored = await self.store.put(name, data, CONTENT_TYPES[extension])
        await self.store.put(caption_name(name), caption.encode("utf-8"), TEXT_TYPE)
        if self.debug_dir is not None:
            await asyncio.to_thread(atomic_write_bytes, self.debug_dir / name, data)
        return Outcome(
            outputs=(relative,),
            cost=cost + self.pool.bill(ref) + self.predictions.answers.bill(ref.key),
            provenance={"grid": ref.grid, "tile": ref.tile, "url": stored.url, "upscaler": self.upscaler.name,
                        "caption": caption},
        )

    def _stamped(self, data: bytes, task: Task, ref: TileRef, grid: dict, subject: str, caption: str) -> bytes:
        """The stored image with its provenance: the tile's subject as its prompt, the model and seed of
        its grid (``grid``: the grid's ledger record)."""
        payload, drawn = grid["payload"], grid["provenance"] or {}
        model = drawn.get("model") or drawn.get("drawer", "unknown")
        provenance = {"key": task.key, "prompt": subject, "grid_prompt": payload["prompt"], "seed": payload["seed"],
                      "grid": ref.grid, "tile": ref.tile, "model": model, "drawer": drawn.get("drawer"),
                      "upscaler": self.upscaler.name, "caption": caption}
        return stamped(data, provenance, prompt=subject, model=model, settings={**drawn, "seed": payload["seed"]})

    async def _upscaled(self, claimed: ClaimedTile) -> tuple[str, bytes, float]:
        relative = upscale_file(claimed.ref.key, self.upscaler.output_format)
        path = self.root / relative
        if is_valid_image(path):  # saved by an earlier attempt or run
            data, cost = path.read_bytes(), 0.0
        else:
            async with self.lane.flight(claimed.ref.key):
                made = await self.upscaler.upscale(claimed.image, key=claimed.ref.key)
            await asyncio.to_thread(atomic_write_bytes, path, made.data)  # fsync off the event loop
            data, cost = made.data, made.cost
        self.predictions.saved(claimed.ref.key)
        return relative, data, cost
