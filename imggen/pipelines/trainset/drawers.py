"""What draws a grid from the source image: flux-kontext-pro on Replicate, or FLUX.2 klein locally."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from imggen.backends.flux2_checkpoint import checkpoint_setting
from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO

from .journal import PredictionJournal


@dataclass(frozen=True)
class MadeImage:
    """An encoded image a drawer or upscaler produced, what it cost, and where it came from."""

    data: bytes
    cost: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)


class GridDrawer(Protocol):
    name: str
    output_format: str  # "jpg" or "png", the encoding of what ``draw`` returns
    settings: dict  # what defines the grids it draws (a run's settings; see imggen/engine/rounds.py)
    paid_model: str | None  # the Replicate model each grid is paid to, or None when drawing is free

    async def draw(
        self, prompt: str, source: bytes, *, grid: int, seed: int, key: str, journal: PredictionJournal
    ) -> MadeImage: ...


class ReplicateGridDrawer:
    """flux-kontext-pro through :class:`~imggen.backends.replicate_backend.ReplicateBackend`, resumable."""

    name = "flux-kontext-pro"
    paid_model = FLUX_KONTEXT_PRO

    def __init__(self, backend, *, aspect_ratio: str = "1:1", output_format: str = "jpg") -> None:
        self._backend = backend
        self._aspect_ratio = aspect_ratio
        self.output_format = output_format
        self.settings = {"grids": self.name, "aspect ratio": aspect_ratio, "grid format": output_format}

    async def draw(
        self, prompt: str, source: bytes, *, grid: int, seed: int, key: str, journal: PredictionJournal
    ) -> MadeImage:
        result = await journal.collect_or_create(
            key,
            FLUX_KONTEXT_PRO,
            self._backend.resume,
            lambda on_created: self._backend.generate_grid(
                prompt, source, aspect_ratio=self._aspect_ratio, output_format=self.output_format,
                seed=seed, on_prediction_created=on_created,
            ),
        )
        return MadeImage(result.data, result.cost or 0.0, {"model": FLUX_KONTEXT_PRO,
                                                            "prediction_id": result.prediction_id})


class Flux2GridDrawer:
    """FLUX.2 klein reference-image editing on this machine: the source image is the reference."""

    name = "flux2-klein"
    output_format = "jpg"
    paid_model = None

    def __init__(self, checkpoint, *, size: int = 1024, device: str | None = None,
                 num_inference_steps: int | None = None) -> None:
        self._options = {"device": device, "num_inference_steps": num_inference_steps}
        self._checkpoint = checkpoint
        self._size = size
        self.settings = {"grids": f"{self.name} {checkpoint_setting(checkpoint)}", "grid size": size,
                         "steps": num_inference_steps}
        self._backend = None
        self._lock = asyncio.Lock()  # one pipeline, one call at a time

    async def draw(
        self, prompt: str, source: bytes, *, grid: int, seed: int, key: str, journal: PredictionJournal
    ) -> MadeImage:
        async with self._lock:
            return await asyncio.to_thread(self._draw, prompt, source, seed)

    def _draw(self, prompt: str, source: bytes, seed: int) -> MadeImage:
        if self._backend is None:
            from imggen.backends.flux2 import Flux2Backend

            self._backend = Flux2Backend(self._checkpoint, **self._options)
        with Image.open(io.BytesIO(source)) as picture:
            reference = picture.convert("RGB")
        (image,) = self._backend.generate(
            [prompt], references=[reference], seeds=[seed], height=self._size, width=self._size
        )
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=95)
        return MadeImage(buffer.getvalue(), 0.0, image.info.get("provenance", {}))
