"""``imggen styles`` killed with SIGKILL mid-run, then rerun: every image exactly once, no request paid twice
except for images in flight at a kill."""

from __future__ import annotations

import collections
import os
import random
import subprocess
import sys

import pytest
from styles_fixtures import CHEAP, SAMPLE_PROMPTS, by_style_images, emulator, emulator_env, generations, kill_while_drawing

from imggen.engine.ledger import Ledger
from imggen.storage.atomic import is_valid_image

TASKS = 120  # the sample prompt set: 12 samples x 10 styles


@pytest.mark.slow
def test_sigkill_then_rerun_keeps_every_image_exactly_once(tmp_path):
    rng = random.Random(7)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "imggen.pipelines.styles.cli", "--prompts", str(SAMPLE_PROMPTS),
               "--output", str(out), "--concurrency", "4", *CHEAP]
    with emulator(latency_s=0.05, jitter_s=0.03) as server:
        env = emulator_env(server)
        kills, in_flight_at_kills = kill_while_drawing(command, env, out, rng, times=3, images=(5, 25), timeout_s=60)
        assert kills >= 1
        final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert final.returncode == 0, final.stderr
        assert f"finished: {TASKS}/{TASKS} done" in final.stderr

        paid = collections.Counter(r.prompt for r in generations(server) if r.status == 200)
        assert len(generations(server)) <= TASKS + sum(in_flight_at_kills.values())
    with Ledger(out) as ledger:
        assert ledger.counts() == {"pending": 0, "running": 0, "done": TASKS, "failed": 0}
        by_prompt = {ledger.task(key)["payload"]["prompt"]: key for key in ledger.keys("done")}
    assert set(paid) == set(by_prompt)
    for prompt, times in paid.items():
        assert times <= 1 + in_flight_at_kills[by_prompt[prompt]], f"{by_prompt[prompt]} was paid {times} times"
    images = by_style_images(out)
    assert len(images) == TASKS and all(is_valid_image(path) for path in images)
    for image in images:
        style = image.parent.name
        dataset = image.name.split("_")[0]
        assert os.path.samefile(image, out / "images/by_dataset" / dataset / image.name), f"{style}: twin differs"
    assert not list(out.rglob("*.part")) and not list(out.rglob("*.link"))
