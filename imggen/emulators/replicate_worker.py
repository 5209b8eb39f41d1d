"""The emulated models at work: each prediction's walk through its statuses, and its output file.

A prediction waits in "starting", runs in "processing" while its image is drawn, and ends as its
scripted or random outcome after the model's latency. Outputs are kept in memory and served by the
emulator under ``/files/``.
"""

from __future__ import annotations

import asyncio
import base64
import math
import random
import time
from collections.abc import Iterable
from typing import Any, Callable

from aiohttp import ClientError, ClientSession, ClientTimeout
from PIL import Image

from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO, replicate_models
from imggen.emulators import replicate_images as images
from imggen.emulators.replicate_state import (
    FAILURE_ERROR,
    SAFETY_ERROR,
    EmulatedPrediction,
    EmulatorCounts,
    ReplicateEmulatorConfig,
    StoredFile,
)

_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png"}


class PredictionWorker:
    """Runs predictions to their outcomes and stores their output files."""

    def __init__(self, config: ReplicateEmulatorConfig, counts: EmulatorCounts) -> None:
        self.config = config
        self.counts = counts
        self.files: dict[str, StoredFile] = {}  # by path under /files/
        self.grids: dict[str, images.GridLayout] = {}  # by prediction id
        self.first_grid: tuple[str, int] | None = None  # prompt and seed of the first grid drawn
        self._base_url = ""
        self._random = random.Random(config.random_seed)
        self._session: ClientSession | None = None
        self.local_files: Callable[[str], bytes | None] = lambda uri: None  # an input uploaded to the emulator

    def open(self, base_url: str) -> None:
        """Begin work for an emulator serving at ``base_url``."""
        self._base_url = base_url
        self._session = ClientSession(timeout=ClientTimeout(total=30))

    async def close(self, predictions: Iterable[EmulatedPrediction]) -> None:
        """Stop every running prediction and release the input downloader."""
        tasks = [prediction.task for prediction in predictions if prediction.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def start(self, prediction: EmulatedPrediction) -> None:
        """Run ``prediction`` in the background to its next scripted or random outcome."""
        prediction.task = asyncio.create_task(self._run(prediction, self._next_outcome(prediction.model)))

    def cancel(self, prediction: EmulatedPrediction) -> None:
        """Cancel ``prediction`` unless it already ended."""
        if not prediction.done.is_set():
            prediction.task.cancel()
            self._finish(prediction, "canceled")

    def _next_outcome(self, ref: str) -> str:
        behaviour = self.config.behaviours[ref]
        if behaviour.outcomes:
            return behaviour.outcomes.popleft()
        return "failed" if self._random.random() < behaviour.failure_rate else "succeeded"

    async def _run(self, prediction: EmulatedPrediction, outcome: str) -> None:
        """Take one prediction through its statuses to ``outcome``."""
        behaviour = self.config.behaviours[prediction.model]
        await asyncio.sleep(behaviour.starting_s)
        if outcome == "aborted":
            self._finish(prediction, "aborted")
            return
        prediction.status, prediction.started_at = "processing", time.time()
        if outcome == "stall":
            await asyncio.Event().wait()
        output, error = None, {"failed": FAILURE_ERROR, "safety": SAFETY_ERROR}.get(outcome)
        if outcome in ("succeeded", "expired"):
            try:
                output = await self._render(prediction, expired=outcome == "expired")
            except ValueError as failure:
                error = str(failure)
        jitter = self.config.latency_jitter
        latency = behaviour.latency_s * (1 + self._random.uniform(-jitter, jitter)) if jitter else behaviour.latency_s
        await asyncio.sleep(max(0.0, prediction.started_at + latency - behaviour.starting_s - time.time()))
        status = "canceled" if outcome == "canceled" else "failed" if error else "succeeded"
        self._finish(prediction, status, output=output, error=error)

    def _finish(self, prediction: EmulatedPrediction, status: str, **result: Any) -> None:
        prediction.finish(status, time.time(), **result)
        self.counts.finished[status] += 1
        if status == "succeeded":
            self.counts.paid[prediction.model] += 1

    async def _render(self, prediction: EmulatedPrediction, *, expired: bool = False) -> str:
        """Draw the output image, store it under /files/ (already expired if asked) and return its URL."""
        inputs = {**replicate_models()[prediction.model].input_defaults(), **prediction.input}
        if prediction.model == FLUX_KONTEXT_PRO:
            source = await self._load_image(inputs["input_image"]) if "input_image" in inputs else None
            self.first_grid = self.first_grid or (inputs["prompt"], inputs.get("seed", 0))
            data, content_type = await asyncio.to_thread(self._draw_grid, prediction, source, inputs)
        else:
            source = await self._load_image(inputs["image"])
            enlarged = await asyncio.to_thread(images.upscale, source, inputs["upscale_factor"])
            data, content_type = await asyncio.to_thread(
                images.encode_image, enlarged, inputs.get("output_format", "jpg")
            )
        path = f"{prediction.id}/output.{_EXTENSIONS[content_type]}"
        self.files[path] = StoredFile(data, content_type, -math.inf if expired else time.time())
        return f"{self._base_url}/files/{path}"

    def _draw_grid(self, prediction: EmulatedPrediction, source, inputs: dict[str, Any]) -> tuple[bytes, str]:
        source = source or images.plain_source(inputs["prompt"])
        size = images.output_size(inputs["aspect_ratio"], source, self.config.grid_megapixels)
        drawn_from = (inputs["prompt"], inputs.get("seed", 0))
        grid, layout = images.render_grid(
            source, inputs["prompt"], size=size, seed=drawn_from[1], near_duplicates=self.config.near_duplicates,
            repeat_of=self.first_grid if self.first_grid != drawn_from else None, repeats=self.config.repeated_tiles,
        )
        self.grids[prediction.id] = layout
        prediction.logs = (f"grid {layout.rows}x{layout.cols}, near-duplicates {layout.duplicates}, "
                           f"repeating the first grid {list(layout.repeated)}\n")
        return images.encode_image(grid, inputs["output_format"])

    async def _load_image(self, uri: str) -> Image.Image:
        """The image a ``data:`` or http(s) input URI names; ``ValueError`` when it cannot be read."""
        uploaded = self.local_files(uri)
        if uploaded is not None:
            data = uploaded
        elif uri.startswith("data:"):
            data = base64.b64decode(uri.partition(",")[2])
        else:
            try:
                async with self._session.get(uri) as response:
                    if response.status != 200:
                        raise ValueError(f"could not download input file: HTTP {response.status}")
                    data = await response.read()
            except ClientError as failure:
                raise ValueError(f"could not download input file: {failure}") from failure
        return await asyncio.to_thread(images.decode_image, data)
