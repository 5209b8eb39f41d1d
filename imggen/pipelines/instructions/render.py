"""What a model worker does with a batch of instruction tasks: load the conditioning images, call
FLUX.2 klein once for the batch, write each PNG atomically (on a saving thread, so the next batch generates meanwhile), and
return each image's provenance.

:class:`RenderSpec` is the picklable recipe a worker process or Ray actor calls once to build its
:class:`InstructionRenderer` (the pipeline is loaded there, never in the parent). Every item of a
batch has the same references and size (the pool batches by that group). Errors name the input
record's ``file:line``. With ``compile`` the renderer warms the compiled model up on a batch of the
run's size before it takes work, so the compile time is not spent on the first real batch. If
``call_log`` is set, each worker appends one line per image it asks the pipeline for (the task key)
to that file before the call: a cheap way to count model calls.
"""

from __future__ import annotations

import concurrent.futures
import functools
import io
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ...engine.errors import ErrorKind, TaskError
from ...storage.atomic import InvalidImage, atomic_write_bytes, check_image_bytes
from ...storage.provenance import png_with_provenance

CALL_LOG_ENV = "IMGGEN_PIPELINE_CALL_LOG"
REFERENCE_CACHE_SIZE = 8  # decoded conditioning images a worker keeps


@dataclass(frozen=True)
class RenderSpec:
    checkpoint: str
    num_inference_steps: int | None = None
    dtype: str | None = None
    call_log: str | None = None
    compile: bool = False
    offload: bool = False
    batch_size: int = 1  # with height and width: the shape the compiled model is warmed up on
    height: int | None = None
    width: int | None = None

    def __call__(self, *, device: str, threads: int | None) -> "InstructionRenderer":
        return InstructionRenderer(self, device=device, threads=threads)


def load_reference(path: str, source: str):
    """A conditioning image as RGB, or a permanent TaskError naming the record and the file.

    The instructions of one question share its images, so decoded images are kept (the last few,
    keyed by path, size and modification time: a replaced file is read again)."""
    try:
        stat = os.stat(path)
        return _decoded_reference(path, stat.st_size, stat.st_mtime_ns)
    except (OSError, InvalidImage) as error:
        raise TaskError(ErrorKind.PERMANENT, f"{source}: conditioning image {path} is unreadable: {error}") from None


@functools.lru_cache(maxsize=REFERENCE_CACHE_SIZE)
def _decoded_reference(path: str, size: int, mtime_ns: int):
    from PIL import Image

    data = Path(path).read_bytes()
    check_image_bytes(data)
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


class InstructionRenderer:
    """One loaded FLUX.2 klein pipeline on one device."""

    def __init__(self, spec: RenderSpec, *, device: str, threads: int | None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        from ...backends.flux2 import Flux2Backend

        self.spec = spec
        self.worker = f"{socket.gethostname()}:{os.getpid()}"  # which process made an image, for the ledger
        self._saver = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="imggen-save")
        self.backend = Flux2Backend(
            spec.checkpoint, device=device, dtype=spec.dtype, num_inference_steps=spec.num_inference_steps,
            compile=spec.compile, offload=spec.offload,
        )
        if spec.compile:
            self.backend.warm_up(spec.batch_size, spec.height, spec.width)

    def __call__(self, payloads: list[dict]) -> list[TaskError] | concurrent.futures.Future:
        """Generate the batch now; the returned future resolves to each image's provenance once saved."""
        first = payloads[0]
        try:
            references = [load_reference(path, first["source"]) for path in first["references"]]
            self._log_calls(payloads)
            started = time.perf_counter()
            images = self.backend.generate(
                [payload["prompt"] for payload in payloads],
                references=references,
                seeds=[payload["seed"] for payload in payloads],
                height=first["height"],
                width=first["width"],
            )
        except TaskError as error:
            if error.message.startswith(first["source"]):
                return [error] * len(payloads)
            return [TaskError(error.kind, f"{first['source']}: {error.message}")] * len(payloads)
        pipeline_s = (time.perf_counter() - started) / len(payloads)  # this image's share of the call
        return self._saver.submit(self._save, payloads, images, pipeline_s)

    def _save(self, payloads: list[dict], images: list, pipeline_s: float) -> list[dict]:
        """Write each PNG atomically (on the saving thread, while the next batch generates)."""
        results = []
        for payload, image in zip(payloads, images):
            provenance = {**image.info["provenance"], "key": payload["key"], "source": payload["source"],
                          "prompt": payload["prompt"],
                          "worker": self.worker, "pipeline_s": round(pipeline_s, 6)}
            png = png_with_provenance(image, provenance, prompt=payload["prompt"], model=provenance["model"],
                                      settings=provenance)
            atomic_write_bytes(payload["path"], png)
            results.append(provenance)
        return results

    def close(self) -> None:
        self._saver.shutdown(wait=True)

    def _log_calls(self, payloads: list[dict]) -> None:
        if self.spec.call_log:
            line = "".join(f"{payload['key']}\n" for payload in payloads).encode()
            fd = os.open(self.spec.call_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
