"""Shared pieces for the instruction-image tests: input folders in the seed's
layout, running the job, and reading images and the pipeline call log."""

from __future__ import annotations

import asyncio
import collections
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imggen.pipelines.instructions import InstructionsOptions, run_instructions
from imggen.pipelines.instructions.render import CALL_LOG_ENV

PLANNER = "Planner-7B"
SIZE, STEPS = 64, 2  # tiny images, 2 denoising steps: milliseconds per image on a CPU


def noise_image(path: Path, seed: int, size: int = 64) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_results(root: Path, planner: str, lines: list) -> Path:
    """predicted_instructions/{planner}/results.jsonl; dicts become JSON, strings are written as they are."""
    path = root / "predicted_instructions" / planner / "results.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def sample_inputs(root: Path, planner: str = PLANNER, questions: int = 3) -> Path:
    """Questions with 2, 1, 0 instructions (then more with 1..3), their images under datasets/ while
    the records say dataset/ (the seed's remap)."""
    noise_image(root / "datasets" / "eval" / "spatial" / "images" / "a.png", 1)
    noise_image(root / "datasets" / "eval" / "spatial" / "images" / "b.png", 2)
    records = []
    for index in range(questions):
        count = (2, 1, 0)[index] if index < 3 else 1 + index % 3
        images = ["dataset/eval/spatial/images/a.png"] + (["dataset/eval/spatial/images/b.png"] if index % 2 else [])
        records.append({"id": index, "dataset": "spatial", "image_paths": images,
                        "instructions": [f"move object {k} of question {index} to the left" for k in range(count)]})
    write_results(root, planner, records)
    return root


def options(root: Path, klein: Path, **changes) -> InstructionsOptions:
    settings = dict(
        planning_model=PLANNER, flux_ckpt=klein, predicted_instructions_root=root / "predicted_instructions",
        output_root=root / "generated_images", image_root=root, height=SIZE, width=SIZE,
        num_inference_steps=STEPS, device="cpu", num_gpus=1,
    )
    settings.update(changes)
    return InstructionsOptions(**settings)


def run(root: Path, klein: Path, **changes):
    return asyncio.run(run_instructions(options(root, klein, **changes)))


@pytest.fixture
def call_log(tmp_path, monkeypatch) -> Path:
    """Every worker appends a line per image it asks the pipeline for."""
    path = tmp_path / "pipeline_calls.log"
    monkeypatch.setenv(CALL_LOG_ENV, str(path))
    return path


def calls(path: Path) -> collections.Counter:
    return collections.Counter(path.read_text().split()) if path.exists() else collections.Counter()


def folder(root: Path, planner: str = PLANNER, dataset: str = "spatial") -> Path:
    return root / "generated_images" / dataset / planner / "flux2-klein-tiny"


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def images_under(path: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(path)): pixels(p) for p in sorted(path.rglob("*.png"))}


class ScriptedHandler:
    """A handler factory for pool tests (picklable, so spawned workers can build it).

    Each item takes ``delays[device]`` seconds and returns which worker ran it in which batch size.
    The payload "crash" ends the worker process the first time (``crash_marker`` records it).
    With ``loaded_marks``, each worker that has loaded leaves a file named after its device there;
    with ``drawn_log``, each item's payload is appended to that file as its batch begins.
    """

    def __init__(self, delays: dict[str, float] | None = None, crash_marker: str | None = None,
                 load_error: str | None = None, loaded_marks: str | None = None, drawn_log: str | None = None) -> None:
        self.delays = delays or {}
        self.crash_marker = crash_marker
        self.load_error = load_error
        self.loaded_marks = loaded_marks
        self.drawn_log = drawn_log

    def __call__(self, *, device: str, threads: int | None):
        if self.load_error:
            raise RuntimeError(self.load_error)
        if self.loaded_marks:
            (Path(self.loaded_marks) / device).touch()
        return lambda payloads: self.handle(device, payloads)

    def handle(self, device: str, payloads: list) -> list:
        import os
        import time

        if "crash" in payloads and self.crash_marker and not os.path.exists(self.crash_marker):
            Path(self.crash_marker).touch()
            os._exit(3)
        if self.drawn_log:
            with open(self.drawn_log, "a") as log:
                log.writelines(f"{payload}\n" for payload in payloads)
        time.sleep(self.delays.get(device, 0.0) * len(payloads))
        return [{"device": device, "pid": os.getpid(), "batch": len(payloads), "payload": p} for p in payloads]


class ProgressBarLoading:
    """A handler factory whose load makes a progress bar, as diffusers does, then leaves a file named
    ``loaded_mark`` and loads for a minute, so that a pool closed meanwhile kills the worker."""

    def __init__(self, loaded_mark: str) -> None:
        self.loaded_mark = loaded_mark

    def __call__(self, *, device: str, threads: int | None):
        import time

        from tqdm import tqdm

        tqdm(total=1, disable=True).close()
        Path(self.loaded_mark).touch()
        time.sleep(60)
        return lambda payloads: payloads


class EnvironmentHandler:
    """A handler factory that answers every item with the worker's value of one environment variable."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *, device: str, threads: int | None):
        import os

        value = os.environ.get(self.name)
        return lambda payloads: [value] * len(payloads)
