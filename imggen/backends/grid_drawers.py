"""What draws a training set's grid from its source image: flux-kontext-pro on Replicate (each grid
paid for once, :meth:`~.replicate_backend.ReplicateBackend.paid_once`), or FLUX.2 klein locally."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from imggen.backends.flux2_checkpoint import checkpoint_setting, checkpoint_source
from imggen.backends.flux2_worker import Flux2Images
from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO
from imggen.distributed.processes import local_pool, worker_devices


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
        self, prompt: str, source: bytes, *, grid: int, seed: int, key: str
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
        self, prompt: str, source: bytes, *, grid: int, seed: int, key: str
    ) -> MadeImage:
        result = await self._backend.paid_once(
            key,
            FLUX_KONTEXT_PRO,
            lambda on_created: self._backend.generate_grid(
                prompt, source, aspect_ratio=self._aspect_ratio, output_format=self.output_format,
                seed=seed, on_prediction_created=on_created,
            ),
        )
        return MadeImage(result.data, result.cost or 0.0, {"model": FLUX_KONTEXT_PRO,
                                                            "prediction_id": result.prediction_id})


class Flux2GridDrawer:
    """FLUX.2 klein reference-image editing on this machine, the source image as the reference, drawn
    by one model worker process (:mod:`imggen.backends.flux2_worker`): the model loads there when the
    first grid is asked for, and Pause and Stop give back the grids queued for it (``withdraw_waiting``)."""

    name = "flux2-klein"
    output_format = "jpg"
    paid_model = None

    def __init__(self, checkpoint, *, size: int = 1024, device: str | None = None,
                 num_inference_steps: int | None = None) -> None:
        self.settings = {"grids": f"{self.name} {checkpoint_setting(checkpoint)}", "grid size": size,
                         "steps": num_inference_steps}
        source, _ = checkpoint_source(checkpoint)
        images = Flux2Images(source, num_inference_steps=num_inference_steps, height=size, width=size,
                             output_format=self.output_format)
        self._pool = local_pool(images, worker_devices(device, 1))
        self.withdraw_waiting = self._pool.withdraw_waiting

    def tell_status(self, say: Callable[[str], None]) -> None:
        """Where the worker's loading is told (the run's announcer): the model loads at the first grid."""
        self._pool.on_status = say

    async def draw(
        self, prompt: str, source: bytes, *, grid: int, seed: int, key: str
    ) -> MadeImage:
        data, provenance = await self._pool.submit({"prompt": prompt, "seed": seed, "references": [source]})
        return MadeImage(data, 0.0, provenance)

    async def aclose(self) -> None:
        await self._pool.close()
