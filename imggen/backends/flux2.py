"""The local FLUX.2 [klein] backend: prompts (and shared reference images) in, PIL images out.

Loads a checkpoint folder (local files only) or a Hub id (see :mod:`.flux2_checkpoint`) with
``Flux2KleinPipeline.from_pretrained``,
on the GPU in bfloat16 when there is one and on the CPU in float32 otherwise. The step count and
guidance come from the checkpoint (klein is step-distilled: 4 steps, no guidance; klein-base:
50 steps, guidance 4.0) unless the caller sets them.

Every image gets its own ``torch.Generator`` seeded with its seed, so an image's pixels depend
on its seed, not on the batch it was generated in. A CUDA out-of-memory error is retried at half
the batch size, down to one image; after that it is a transient :class:`TaskError` for the
runner to back off from. torch and diffusers are imported when a backend is created, never on
``import imggen``.

For speed (see :mod:`imggen.backends.flux2_speed`): each distinct prompt goes through the text
encoder once (its embedding is kept for later calls); ``compile=True`` compiles the transformer,
which :meth:`Flux2Backend.warm_up` does before the first real call; ``offload=True`` keeps each model
on the CPU except while it runs, for GPUs with less memory than the model needs.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imggen.backends.flux2_checkpoint import checkpoint_source
from imggen.backends.flux2_speed import PROMPT_CACHE_SIZE, PromptEmbeddings, compile_transformer, place_pipeline
from imggen.engine.errors import ErrorKind, TaskError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

DISTILLED_PRESET = {"num_inference_steps": 4, "guidance_scale": 1.0}
BASE_PRESET = {"num_inference_steps": 50, "guidance_scale": 4.0}
MIN_REFERENCE_SIDE = 64  # the pipeline's own limit for conditioning images
MAX_REFERENCE_ASPECT = 8
SIZE_MULTIPLE = 16  # every FLUX.2 VAE scales by 8, and the transformer takes 2x2 latent patches


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    )


def _pick_device(device: str | None):
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _pick_dtype(dtype: Any, device) -> Any:
    import torch

    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'bfloat16' or 'float32'")
        return resolved
    return dtype


def check_references(references: Sequence[Any]) -> list[Image.Image]:
    """The reference images as a list, or a permanent TaskError saying what is wrong with one."""
    from PIL import Image

    checked = []
    for index, reference in enumerate(references):
        if not isinstance(reference, Image.Image):
            raise TaskError(ErrorKind.PERMANENT,
                            f"reference image {index} is a {type(reference).__name__}, not a PIL image")
        width, height = reference.size
        problem = (f"each side must be at least {MIN_REFERENCE_SIDE} px" if min(width, height) < MIN_REFERENCE_SIDE
                   else f"the aspect ratio must be at most {MAX_REFERENCE_ASPECT}:1"
                   if max(width, height) > MAX_REFERENCE_ASPECT * min(width, height) else None)
        if problem:
            raise TaskError(ErrorKind.PERMANENT, f"reference image {index} is {width}x{height}; {problem}")
        checked.append(reference)
    return checked


def size_problem(height: int | None, width: int | None, multiple: int = SIZE_MULTIPLE) -> str | None:
    """Why the model cannot draw ``height`` x ``width`` (each side a positive multiple of ``multiple``), or None."""
    for name, value in (("height", height), ("width", width)):
        if value is not None and (value < multiple or value % multiple):
            return (f"{name} {value} is not a positive multiple of {multiple}; "
                    f"FLUX.2 klein needs e.g. {max(1, value // multiple) * multiple}")
    return None


def parse_flux_size(size: str | None) -> tuple[int | None, int | None]:
    """``"64x64"`` → ``(64, 64)``; None (or ``auto``) lets the model choose."""
    if size in (None, "auto"):
        return None, None
    width, sep, height = size.partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise ValueError(f"size {size!r} is not WIDTHxHEIGHT")
    return int(width), int(height)


VERBOSE_ENV = "IMGGEN_VERBOSE"  # set (by --verbose) to keep diffusers' and transformers' bars and warnings


def quiet_libraries() -> None:
    """diffusers' and transformers' loading bars and advice off (errors stay), unless IMGGEN_VERBOSE is set."""
    if os.environ.get(VERBOSE_ENV):
        return
    import diffusers
    import transformers

    for library in (diffusers, transformers):
        library.utils.logging.disable_progress_bar()
        library.utils.logging.set_verbosity_error()


class Flux2Backend:
    """One FLUX.2 [klein] pipeline on one device."""

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        device: str | None = None,
        dtype: Any = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        compile: bool = False,
        offload: bool = False,
        prompt_cache_size: int = PROMPT_CACHE_SIZE,
    ) -> None:
        from diffusers import Flux2KleinPipeline

        quiet_libraries()
        source, local = checkpoint_source(checkpoint)
        self.checkpoint = Path(source)  # its name is the generation model's name in the seed's layout
        self.device = _pick_device(device)
        self.dtype = _pick_dtype(dtype, self.device)
        started = time.perf_counter()
        with warnings.catch_warnings():
            # diffusers >= 0.40 prefers ``dtype=``, which 0.37 silently ignores; keep ``torch_dtype``.
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            self.pipeline = place_pipeline(
                Flux2KleinPipeline.from_pretrained(source, torch_dtype=self.dtype, local_files_only=local),
                self.device,
                offload=offload,
            )
        self.pipeline.set_progress_bar_config(disable=True)
        self.scheduler = type(self.pipeline.scheduler).__name__  # the sampler, as the provenance names it
        log.info(
            "loaded %s on %s (%s) in %.2f s",
            self.checkpoint.name,
            self.device,
            str(self.dtype).removeprefix("torch."),
            time.perf_counter() - started,
        )
        self.is_distilled = bool(self.pipeline.config.get("is_distilled", False))
        preset = DISTILLED_PRESET if self.is_distilled else BASE_PRESET
        self.num_inference_steps = (
            num_inference_steps if num_inference_steps is not None else preset["num_inference_steps"]
        )
        self.guidance_scale = (
            guidance_scale if guidance_scale is not None else preset["guidance_scale"]
        )
        # Height and width must be multiples of this (2x2 latent patches of the VAE's scale).
        self.size_multiple = 2 * self.pipeline.vae_scale_factor
        self.max_batch_size: int | None = None  # lowered after an out-of-memory error
        # None: every call encodes its prompts (the pipeline's own path).
        self.prompt_embeddings = PromptEmbeddings(self.pipeline, prompt_cache_size) if prompt_cache_size else None
        self.compiled = compile
        self.compile_s: float | None = None  # the warm-up call's time, compile included
        if compile:
            compile_transformer(self.pipeline)

    def warm_up(self, batch_size: int = 1, height: int | None = None, width: int | None = None) -> float:
        """Run one throw-away batch (so a compiled transformer compiles now); its seconds."""
        started = time.perf_counter()
        self._run(["warm-up"] * batch_size, [], list(range(batch_size)), height, width)
        seconds = time.perf_counter() - started
        if self.compiled and self.compile_s is None:
            self.compile_s = seconds
        log.info("warm-up batch of %d on %s took %.1f s", batch_size, self.device, seconds)
        return seconds

    def check_size(self, height: int | None, width: int | None) -> None:
        """Raise a fatal TaskError unless height and width fit the model (every task would fail)."""
        problem = size_problem(height, width, self.size_multiple)
        if problem:
            raise TaskError(ErrorKind.FATAL, problem)

    def provenance(self, seed: int, image: Image.Image) -> dict[str, Any]:
        """What made this image, for metadata and the ledger."""
        made = {
            "model": self.checkpoint.name,
            "seed": seed,
            "steps": self.num_inference_steps,
            "guidance": self.guidance_scale,
            "scheduler": self.scheduler,
            "height": image.height,
            "width": image.width,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
        }
        if self.compiled:  # compiled kernels round differently: a pixel may be a level away
            made.update(compiled=True, compile_s=None if self.compile_s is None else round(self.compile_s, 3))
        return made

    def generate(
        self,
        prompts: list[str],
        *,
        references: list[Image.Image] | None = None,
        seeds: list[int],
        height: int | None = None,
        width: int | None = None,
    ) -> list[Image.Image]:
        """One image per prompt, seeded by ``seeds[i]``; all prompts share ``references``.

        Each image carries its provenance dict in ``image.info["provenance"]``. Without height
        and width the size is the first reference's (cropped to a multiple of 16), or 1024x1024.
        """
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds; give one seed per prompt")
        self.check_size(height, width)
        images = check_references(references or [])
        batch_size = min(len(prompts), self.max_batch_size or len(prompts))
        results: list[Image.Image] = []
        while len(results) < len(prompts):
            start = len(results)
            chunk = slice(start, start + batch_size)
            try:
                results += self._run(prompts[chunk], images, seeds[chunk], height, width)
            except Exception as error:  # noqa: BLE001 - only out-of-memory is handled here
                if not _is_out_of_memory(error):
                    raise
                self._release_cached_memory()
                if batch_size == 1:
                    raise TaskError(
                        ErrorKind.TRANSIENT,
                        f"out of memory on {self.device} even at batch size 1 "
                        f"({height or 'default'}x{width or 'default'}, {len(images)} references)",
                    ) from error
                batch_size = max(1, batch_size // 2)
                self.max_batch_size = batch_size
                log.warning("out of memory on %s; retrying at batch size %d", self.device, batch_size)
        for seed, image in zip(seeds, results):
            image.info["provenance"] = self.provenance(seed, image)
        return results

    def _run(self, prompts, images, seeds, height, width) -> list[Image.Image]:
        import torch

        # CPU generators give the same noise on every device, per image, whatever the batch.
        generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]
        with torch.inference_mode():
            output = self.pipeline(
                image=images or None,
                **self._text_inputs(list(prompts)),
                height=height,
                width=width,
                num_inference_steps=self.num_inference_steps,
                guidance_scale=self.guidance_scale,
                generator=generators,
            )
        return list(output.images)

    def _text_inputs(self, prompts: list[str]) -> dict[str, Any]:
        """The pipeline's text arguments: cached embeddings, or the prompts to encode."""
        if self.prompt_embeddings is None:
            return {"prompt": prompts}
        inputs = {"prompt_embeds": self.prompt_embeddings(prompts)}
        if self.guidance_scale > 1 and not self.is_distilled:  # the pipeline's CFG condition
            inputs["negative_prompt_embeds"] = self.prompt_embeddings([""] * len(prompts))
        return inputs

    def _release_cached_memory(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.empty_cache()
