"""Upscalers for a training set's chosen tiles: Topaz on Replicate, Lanczos on the CPU, or a local model file through spandrel.

:func:`make_upscaler` turns the CLI's ``--upscaler topaz|lanczos|PATH`` into one of them.
spandrel (which loads ESRGAN-style ``.pth``/``.safetensors`` files) is an optional dependency:
``pip install spandrel``; without it a model path fails at once with that instruction.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Protocol

from PIL import Image

from imggen.backends.replicate_catalog import TOPAZ_IMAGE_UPSCALE

from .grid_drawers import MadeImage

PIL_FORMATS = {"jpg": "JPEG", "png": "PNG"}


def encode(image: Image.Image, output_format: str) -> bytes:
    buffer = io.BytesIO()
    pil_format = PIL_FORMATS[output_format]
    image.convert("RGB").save(buffer, format=pil_format, **({"quality": 95} if pil_format == "JPEG" else {}))
    return buffer.getvalue()


class Upscaler(Protocol):
    name: str
    output_format: str
    settings: dict  # what defines its images (a run's settings; see imggen/engine/rounds.py)
    paid_model: str | None  # the Replicate model each upscale is paid to, or None when upscaling is free

    async def upscale(self, image: bytes, *, key: str) -> MadeImage: ...


class TopazUpscaler:
    """topazlabs/image-upscale through the Replicate backend, resumable after a crash."""

    name = "topaz"
    paid_model = TOPAZ_IMAGE_UPSCALE

    def __init__(self, backend, *, enhance_model: str = "Standard V2", upscale_factor: str = "2x",
                 output_format: str = "jpg") -> None:
        self._backend = backend
        self._options = {"enhance_model": enhance_model, "upscale_factor": upscale_factor,
                         "output_format": output_format}
        self.output_format = output_format
        self.settings = {"upscaler": self.name, **self._options}

    async def upscale(self, image: bytes, *, key: str) -> MadeImage:
        result = await self._backend.paid_once(
            key,
            TOPAZ_IMAGE_UPSCALE,
            lambda on_created: self._backend.upscale(image, on_prediction_created=on_created, **self._options),
        )
        return MadeImage(result.data, result.cost or 0.0, {"model": TOPAZ_IMAGE_UPSCALE,
                                                            "prediction_id": result.prediction_id})


class LanczosUpscaler:
    """Plain Lanczos resampling by an integer factor: free, local, no model."""

    name = "lanczos"
    paid_model = None

    def __init__(self, *, factor: int = 2, output_format: str = "jpg") -> None:
        if factor < 1:
            raise ValueError("the upscale factor must be at least 1")
        self.factor = factor
        self.settings = {"upscaler": self.name, "upscale_factor": f"{factor}x", "output_format": output_format}
        self.output_format = output_format

    async def upscale(self, image: bytes, *, key: str) -> MadeImage:
        return await asyncio.to_thread(self._upscale, image)

    def _upscale(self, image: bytes) -> MadeImage:
        with Image.open(io.BytesIO(image)) as picture:
            size = (picture.width * self.factor, picture.height * self.factor)
            enlarged = picture.convert("RGB").resize(size, Image.Resampling.LANCZOS)
        return MadeImage(encode(enlarged, self.output_format), 0.0, {"model": f"lanczos-{self.factor}x"})


class SpandrelUpscaler:
    """A super-resolution model file (ESRGAN, SwinIR, ...) loaded by spandrel, run with torch locally."""

    paid_model = None

    def __init__(self, model_path: str | Path, *, device: str | None = None, output_format: str = "jpg") -> None:
        try:
            import spandrel
        except ImportError:
            raise RuntimeError(
                f"--upscaler {model_path} needs the optional package spandrel: pip install spandrel"
            ) from None
        import torch

        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"upscaler model file {self.model_path} does not exist")
        self._torch = torch
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._model = spandrel.ModelLoader(device=self._device).load_from_file(str(self.model_path)).eval()
        self.name = f"spandrel:{self.model_path.name}"
        self.output_format = output_format
        self.settings = {"upscaler": f"spandrel {self.model_path.resolve()}", "output_format": output_format}
        self._lock = asyncio.Lock()

    async def upscale(self, image: bytes, *, key: str) -> MadeImage:
        async with self._lock:
            return await asyncio.to_thread(self._upscale, image)

    def _upscale(self, image: bytes) -> MadeImage:
        import numpy as np

        torch = self._torch
        with Image.open(io.BytesIO(image)) as picture:
            pixels = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
        batch = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0).to(self._device)
        with torch.inference_mode():
            output = self._model(batch).clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
        enlarged = Image.fromarray((output * 255.0).round().astype(np.uint8))
        return MadeImage(encode(enlarged, self.output_format), 0.0, {"model": self.name, "scale": self._model.scale})


def make_upscaler(choice: str, *, replicate_backend=None, output_format: str = "jpg") -> Upscaler:
    """``topaz`` (needs ``replicate_backend``), ``lanczos``, or the path of a model file for spandrel."""
    if choice == "topaz":
        if replicate_backend is None:
            raise ValueError("the topaz upscaler needs a Replicate backend")
        return TopazUpscaler(replicate_backend, output_format=output_format)
    if choice == "lanczos":
        return LanczosUpscaler(output_format=output_format)
    return SpandrelUpscaler(choice, output_format=output_format)
