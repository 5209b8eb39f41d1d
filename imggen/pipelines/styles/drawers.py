"""The two ways the style matrix draws one image: the OpenAI Images API, or the local FLUX.2 klein model.

Each drawer turns one prompt into a :class:`Picture` (PNG bytes, what made it, what it cost)
and knows nothing of files or datasets; :mod:`~imggen.pipelines.styles.work` stores the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from imggen.backends.openai_images import GeneratedImage, OpenAIImageBackend
from imggen.backends.flux2 import parse_flux_size
from imggen.backends.flux2_checkpoint import checkpoint_source
from imggen.backends.flux2_worker import Flux2Images
from imggen.backends.openai_models import ImageModelSpec
from imggen.engine.errors import RateHint
from imggen.distributed.pool import WorkerPool
from imggen.distributed.processes import local_pool, worker_devices
from imggen.engine.seeds import task_seed
from imggen.storage.provenance import as_png


@dataclass(frozen=True)
class Picture:
    png: bytes
    provenance: dict[str, Any]  # backend, model, parameters and (dall-e-3) revised_prompt
    cost: float | None = None  # US dollars; None: unknown, the task's estimate is booked instead
    rate: RateHint | None = None


class Drawer(Protocol):
    capacity: int | None  # images it can draw at once (a local model); None: as many as the provider allows

    async def __call__(self, prompt: str, key: str) -> Picture: ...

    async def aclose(self) -> None: ...


def openai_picture(image: GeneratedImage, *, price_multiplier: float = 1.0) -> Picture:
    """An OpenAI image as a picture; ``price_multiplier`` is the Batch API's discount for batch lines."""
    provenance = {"backend": "openai", "model": image.model, "parameters": image.params,
                  "revised_prompt": image.revised_prompt}
    cost = image.cost * price_multiplier if image.cost is not None else None
    if price_multiplier != 1.0:
        provenance["price_multiplier"] = price_multiplier  # so the full price per image can be read back
    return Picture(as_png(image.data), provenance, cost, image.rate)


@dataclass
class OpenAIDrawer:
    """One image per call from an OpenAI image model, with the request's parameters."""

    backend: OpenAIImageBackend
    spec: ImageModelSpec
    size: str | None = None
    quality: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # dall-e-3's style, for example
    capacity = None  # the run's in-flight target follows the provider's limits

    async def __call__(self, prompt: str, key: str) -> Picture:
        image = await self.backend.generate(prompt, model=self.spec.id, size=self.size, quality=self.quality,
                                            **self.extra)
        return openai_picture(image)

    async def aclose(self) -> None:
        await self.backend.aclose()


class Flux2Drawer:
    """Images from a local FLUX.2 klein checkpoint, drawn by one model worker process.

    The checkpoint loads in the worker when the first image is asked for, never in this process, so
    a stop while it loads ends the worker at once. Pause and Stop hold within what the worker draws
    (``withdraw_waiting``: the images queued for it are given back)."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.capacity = pool.capacity  # a batch drawn, one in the worker's inbox, one queued: the GPU never waits
        self.withdraw_waiting = pool.withdraw_waiting

    @classmethod
    def open(cls, checkpoint: str | Path, *, size: str | None = None, steps: int | None = None,
             on_status: Callable[[str], None] = lambda message: None) -> "Flux2Drawer":
        width, height = parse_flux_size(size)
        source, _ = checkpoint_source(checkpoint)
        images = Flux2Images(source, num_inference_steps=steps, height=height, width=width)
        return cls(local_pool(images, worker_devices(None, 1), on_status=on_status))

    async def __call__(self, prompt: str, key: str) -> Picture:
        png, provenance = await self.pool.submit({"prompt": prompt, "seed": task_seed(key)})
        provenance = dict(provenance)
        model = provenance.pop("model")
        return Picture(png, {"backend": "flux2", "model": model, "parameters": provenance}, 0.0)

    async def aclose(self) -> None:
        await self.pool.close()
