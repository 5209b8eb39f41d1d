"""Run the three pipelines' notebooks headless on local backends only: no key, no GPU, no network.

A tiny random FLUX.2 klein checkpoint is built on the spot; the style matrix draws with it, the
instruction pipeline conditions it on the bundled sample images, and the training set draws its
grids with it, judges tiles by perceptual hash, upscales with Lanczos and stores to a folder.
Provider keys in the environment are removed from the notebooks' kernels, so they change nothing
and can appear in no file the demo writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..backends.tiny_flux2 import build_tiny_checkpoint
from ..notebook.headless import execute_notebook


def _shipped(folder: str) -> Path:
    """The repository's ``folder`` (a clone or an editable install), else the wheel's bundled copy."""
    package = Path(__file__).resolve().parents[1]
    in_repository = package.parent / folder
    return in_repository if (package.parent / "pyproject.toml").exists() else package / "_bundled" / folder


NOTEBOOKS, SAMPLES = _shipped("notebooks"), _shipped("data")
PROVIDER_VARIABLES = (
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "REPLICATE_API_TOKEN", "REPLICATE_BASE_URL",
    "AWS_ACCESS_KEY", "AWS_ACCESS_SECRET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_USER_FILES_BUCKET", "AWS_ENDPOINT_URL",
)


@dataclass(frozen=True)
class Stage:
    """One pipeline of the tour: its notebook, where it writes, and its parameters."""

    title: str
    notebook: str
    output: str  # folder under the demo's root
    parameters: Callable[[Path, Path], dict]  # (demo root, checkpoint) -> papermill parameters


STAGES = (
    Stage(
        "Style matrix", "01_style_matrix.ipynb", "styles",
        lambda root, ckpt: {
            "prompts": str(SAMPLES / "prompts" / "sample_prompts.json"), "output": str(root / "styles"),
            "max_samples": 1, "backend": "flux2", "flux_ckpt": str(ckpt), "size": "64x64", "sheet": True,
            "interactive": False,
        },
    ),
    Stage(
        "Instruction images", "02_instruction_images.ipynb", "instructions",
        lambda root, ckpt: {
            "planning_model": "DemoPlanner", "flux_ckpt": str(ckpt),
            "predicted_instructions_root": str(SAMPLES / "instructions" / "predicted_instructions"),
            "image_root": str(SAMPLES / "instructions"), "output_root": str(root / "instructions"),
            "height": 128, "width": 128, "device": "cpu", "num_gpus": 1, "interactive": False,
        },
    ),
    Stage(
        "Training set", "03_training_set.ipynb", "trainset",
        lambda root, ckpt: {
            "source": str(SAMPLES / "trainset" / "sample_source.png"), "user_id": "demo-user",
            "actor_id": "demo-actor", "target": 20, "grid": 3, "output": str(root / "trainset"),
            "local": True, "flux_ckpt": str(ckpt), "flux_size": 192, "interactive": False,
        },
    ),
)


def missing_files() -> list[Path]:
    """The notebooks and samples the tour needs (in the repository, and bundled in a built wheel)."""
    needed = [NOTEBOOKS / stage.notebook for stage in STAGES] + [SAMPLES / "prompts", SAMPLES / "instructions"]
    return [path for path in needed + [SAMPLES / "trainset"] if not path.exists()]


def run_tour(root: Path, say: Callable[[str], None] = print) -> list[tuple[Stage, Path]]:
    """Build the checkpoint, run each notebook into ``root``; return the executed notebooks."""
    root.mkdir(parents=True, exist_ok=True)
    for name in PROVIDER_VARIABLES:
        os.environ.pop(name, None)
    checkpoint = root / "flux2-klein-tiny"
    if not (checkpoint / "model_index.json").exists():
        say(f"building a tiny random FLUX.2 klein checkpoint in {checkpoint}")
        build_tiny_checkpoint(checkpoint)
    executed = []
    for stage in STAGES:
        say(f"running {stage.notebook} ({stage.title})")
        result = root / "notebooks" / stage.notebook
        result.parent.mkdir(exist_ok=True)
        execute_notebook(
            NOTEBOOKS / stage.notebook, result, parameters=stage.parameters(root, checkpoint),
            cwd=str(root), progress_bar=False, kernel_name="python3",
        )
        executed.append((stage, result))
    return executed
