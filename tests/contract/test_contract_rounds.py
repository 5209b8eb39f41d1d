"""The contract, rounds: ``--new-round`` draws new pixels on every kind of run, by one seed rule that
includes the round (the OpenAI models take no seed: their kind is left out)."""

from __future__ import annotations

import hashlib
import subprocess
import time

import pytest
from run_kinds import KINDS


pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
SEEDED = ["styles-flux2", "instructions-local", "trainset-replicate"]


def pixels(path) -> str:
    from PIL import Image

    with Image.open(path) as image:
        return hashlib.sha256(image.tobytes()).hexdigest()


@pytest.mark.parametrize("kind", SEEDED)
def test_a_new_round_draws_new_pixels(kind, tmp_path, klein):
    with KINDS[kind](tmp_path, klein) as run:
        first = subprocess.run(run.command, env=run.env, capture_output=True, text=True, timeout=240)
        assert first.returncode == 0, first.stderr
        before = {pixels(path) for path in run.image_files()}
        began = time.time()
        again = subprocess.run([*run.command, "--new-round"], env=run.env, capture_output=True, text=True,
                               timeout=240)
        assert again.returncode == 0, again.stderr
        made = [path for path in run.image_files() if path.stat().st_mtime >= began]
        assert made, "the new round made no image"
        repeated = [path for path in made if pixels(path) in before]
        assert not repeated, f"{len(repeated)} of {len(made)} images of the new round repeat the first round's pixels"
