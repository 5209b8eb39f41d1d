"""Where --flux_ckpt comes from: a checkpoint folder, a Hugging Face Hub id (through the cache), or nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from instructions_fixtures import PLANNER, SIZE, STEPS, sample_inputs  # noqa: F401 - fixtures

from imggen.backends.flux2_checkpoint import checkpoint_source

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache(home: Path, repo_id: str, checkpoint: Path) -> Path:
    """A Hugging Face cache (``HF_HOME``) holding ``checkpoint`` as the snapshot of ``repo_id``'s main."""
    repo = home / "hub" / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(checkpoint, repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SNAPSHOT)
    return home


def instructions(root: Path, checkpoint: str, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "imggen.cli", "instructions", "--planning_model", PLANNER,
               "--predicted_instructions_root", str(root / "predicted_instructions"), "--image_root", str(root),
               "--output_root", str(root / "generated_images"), "--flux_ckpt", checkpoint, "--height", str(SIZE),
               "--width", str(SIZE), "--num_inference_steps", str(STEPS), "--device", "cpu", "--num_gpus", "1"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=root, env={**os.environ, **env})


@pytest.mark.slow
def test_a_hub_id_is_loaded_from_the_hugging_face_cache(tmp_path, klein):  # noqa: F811
    root = sample_inputs(tmp_path / "work")
    home = hub_cache(tmp_path / "hf", "imggen-test/klein-tiny", klein)
    ran = instructions(root, "imggen-test/klein-tiny", HF_HOME=str(home), HF_HUB_OFFLINE="1")
    assert ran.returncode == 0, ran.stderr[-3000:]
    images = sorted((root / "generated_images" / "spatial" / PLANNER / "klein-tiny").rglob("img_*.png"))
    assert len(images) == 3  # questions with 2, 1 and 0 instructions


def test_a_checkpoint_that_does_not_exist_is_named_before_any_work(tmp_path):
    root = sample_inputs(tmp_path / "work")
    for missing in ("./checkpoints/nope", "nope", str(tmp_path / "absent")):
        ran = instructions(root, missing)
        assert ran.returncode == 2
        assert "does not exist" in ran.stderr and "black-forest-labs/FLUX.2-klein-4B" in ran.stderr
        assert "Traceback" not in ran.stderr and not (root / "generated_images").exists()
    ran = instructions(root, str(root))  # a folder, but no checkpoint
    assert ran.returncode == 2 and "is not a FLUX.2 klein checkpoint folder" in ran.stderr


def test_names_that_are_no_folder_and_no_hub_id_do_not_exist():
    for not_an_id in ("a/b/c", "../x", "~/ckpt", "no-slash", "/abs/path"):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            checkpoint_source(not_an_id)
