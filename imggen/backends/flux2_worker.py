"""FLUX.2 klein in a model worker of :mod:`imggen.distributed`: prompts and seeds in, encoded images
and provenance out.

:class:`Flux2Images` is the picklable recipe a worker process (or Ray actor) calls once, on its
device, to load the checkpoint; the handler it returns draws a batch of ``{"prompt", "seed"}``
payloads (with ``references``: encoded conditioning images, shared by the batch) at the recipe's
size, as PNG or JPEG. The parent never loads the model, so a stop while it loads ends the worker at
once, and Pause and Stop hold within what the worker draws (see the pool).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Flux2Images:
    checkpoint: str
    num_inference_steps: int | None = None
    height: int | None = None
    width: int | None = None
    output_format: str = "png"  # or "jpg"

    def __call__(self, *, device: str, threads: int | None) -> Callable[[list[dict]], list[tuple[bytes, dict]]]:
        if threads:
            import torch

            torch.set_num_threads(threads)
        from imggen.backends.flux2 import Flux2Backend

        backend = Flux2Backend(self.checkpoint, device=device, num_inference_steps=self.num_inference_steps)

        def draw(payloads: list[dict[str, Any]]) -> list[tuple[bytes, dict]]:
            references = [_decoded(data) for data in payloads[0].get("references", ())]
            images = backend.generate([payload["prompt"] for payload in payloads], references=references,
                                      seeds=[payload["seed"] for payload in payloads],
                                      height=self.height, width=self.width)
            return [(self._encoded(image), image.info["provenance"]) for image in images]

        return draw

    def _encoded(self, image) -> bytes:
        from imggen.storage.provenance import as_png

        if self.output_format == "png":
            return as_png(image)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=95)
        return buffer.getvalue()


def _decoded(data: bytes):
    from PIL import Image

    with Image.open(io.BytesIO(data)) as picture:
        return picture.convert("RGB")
