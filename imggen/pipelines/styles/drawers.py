"""The two ways the style matrix draws one image: the OpenAI Images API, or the local FLUX.2 klein model.

Each drawer turns one prompt into a :class:`Picture` (PNG bytes, what made it, what it cost)
and knows nothing of files or datasets; :mod:`~imggen.pipelines.styles.work` stores the result.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from imggen.backends.openai_images import GeneratedImage, OpenAIImageBackend
from imggen.backends.flux2 import parse_flux_size
from imggen.backends.openai_models import ImageModelSpec
from imggen.engine.errors import RateHint
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
    """One image per call from a local FLUX.2 klein checkpoint, run in a worker thread.

    Its capacity is one image: the run keeps one task in flight, so in flight is what the model
    draws (never a queue of tasks waiting for it), and Pause and Stop hold after that image."""

    capacity = 1

    def __init__(self, backend: Any, *, height: int | None = None, width: int | None = None) -> None:
        self.backend = backend  # an imggen.backends.flux2.Flux2Backend
        self.height, self.width = height, width

    @classmethod
    async def load(
        cls, checkpoint: str | Path, *, size: str | None = None, steps: int | None = None
    ) -> "Flux2Drawer":
        """Load the checkpoint in a thread so a notebook's loop stays responsive meanwhile."""
        from imggen.backends.flux2 import Flux2Backend  # imports torch

        backend = await asyncio.to_thread(Flux2Backend, checkpoint, num_inference_steps=steps)
        width, height = parse_flux_size(size)
        backend.check_size(height, width)
        return cls(backend, height=height, width=width)

    async def __call__(self, prompt: str, key: str) -> Picture:
        (image,) = await asyncio.to_thread(
            self.backend.generate, [prompt], seeds=[task_seed(key)], height=self.height, width=self.width
        )
        provenance = dict(image.info["provenance"])
        model = provenance.pop("model")
        return Picture(as_png(image), {"backend": "flux2", "model": model, "parameters": provenance}, 0.0)

    async def aclose(self) -> None:
        return None
