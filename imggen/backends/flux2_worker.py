"""FLUX.2 klein in a model worker of :mod:`imggen.distributed`: prompts and seeds in, PNG bytes and
provenance out.

:class:`Flux2Images` is the picklable recipe a worker process (or Ray actor) calls once, on its
device, to load the checkpoint; the handler it returns draws a batch of ``{"prompt", "seed"}``
payloads at the recipe's size. The parent never loads the model, so a stop while it loads ends the
worker at once, and Pause and Stop hold within what the worker draws (see the pool).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Flux2Images:
    checkpoint: str
    num_inference_steps: int | None = None
    height: int | None = None
    width: int | None = None

    def __call__(self, *, device: str, threads: int | None) -> Callable[[list[dict]], list[tuple[bytes, dict]]]:
        if threads:
            import torch

            torch.set_num_threads(threads)
        from imggen.backends.flux2 import Flux2Backend
        from imggen.storage.provenance import as_png

        backend = Flux2Backend(self.checkpoint, device=device, num_inference_steps=self.num_inference_steps)

        def draw(payloads: list[dict[str, Any]]) -> list[tuple[bytes, dict]]:
            images = backend.generate([payload["prompt"] for payload in payloads],
                                      seeds=[payload["seed"] for payload in payloads],
                                      height=self.height, width=self.width)
            return [(as_png(image), image.info["provenance"]) for image in images]

        return draw
