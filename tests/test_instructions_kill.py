"""The instruction job killed with SIGKILL mid-run (workers and all), then rerun: every image ends up
generated, and none is generated twice except those the ledger shows in flight at a kill. A
regeneration killed while it plans is carried on by a plain rerun, never taken as done."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from imggen.engine.ledger import Ledger
from imggen.pipelines.instructions.render import CALL_LOG_ENV
from imggen.storage.atomic import is_valid_image

from instructions_fixtures import PLANNER, call_log, calls, folder, run, sample_inputs

__all__ = ["call_log"]


def start(root, klein, log) -> subprocess.Popen:
    args = [
        sys.executable, "-m", "imggen.pipelines.instructions", "--planning_model", PLANNER,
        "--predicted_instructions_root", str(root / "predicted_instructions"), "--image_root", str(root),
        "--output_root", str(root / "generated_images"), "--flux_ckpt", str(klein), "--height", "64", "--width", "64",
        "--num_inference_steps", "2", "--device", "cpu", "--num_gpus", "2",
    ]
    return subprocess.Popen(args, env={**os.environ, CALL_LOG_ENV: str(log)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_then_rerun_generates_no_image_twice(tmp_path, klein):
    sample_inputs(tmp_path, questions=16)  # 28 images
    log = tmp_path / "calls.log"
    in_flight_at_kills: collections.Counter = collections.Counter()
    for kill_after in (4, 8):
        before = sum(calls(log).values())
        process = start(tmp_path, klein, log)
        deadline = time.monotonic() + 120
        while sum(calls(log).values()) < before + kill_after and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert process.poll() is None, process.stderr.read()
        process.send_signal(signal.SIGKILL)
        process.wait()
        time.sleep(0.5)  # the workers die with their parent
        with Ledger(tmp_path / "generated_images") as ledger:
            in_flight_at_kills.update(ledger.keys("running"))
    final = start(tmp_path, klein, log)
    _, stderr = final.communicate(timeout=240)
    assert final.returncode == 0, stderr
    assert "finished: 28/28 done" in stderr

    counts = calls(log)
    assert len(counts) == 28
    for key, times in counts.items():
        assert times <= 1 + in_flight_at_kills[key], f"{key} generated {times} times, in flight at {in_flight_at_kills[key]} kills"
    out = folder(tmp_path)
    assert all(is_valid_image(out / key.split("/", 3)[3]) for key in counts)
    stats = json.loads((out / "stats.json").read_text())
    assert sum(int(name.split()[0]) * len(ids) for name, ids in stats.items() if name != "summary") == 28


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("stage", ["before-commit", "after-commit"])
def test_regeneration_killed_while_planning_still_regenerates_every_image(tmp_path, klein, stage, call_log):
    sample_inputs(tmp_path, questions=4)  # 4 images
    run(tmp_path, klein)
    assert sum(calls(call_log).values()) == 4
    args = [
        "--planning_model", PLANNER, "--predicted_instructions_root", str(tmp_path / "predicted_instructions"),
        "--image_root", str(tmp_path), "--output_root", str(tmp_path / "generated_images"), "--flux_ckpt", str(klein),
        "--height", "64", "--width", "64", "--num_inference_steps", "2", "--device", "cpu", "--num_gpus", "1",
    ]
    killed = subprocess.run([sys.executable, str(Path(__file__).parent / "kill_while_planning.py"), stage, "1",
                             *args, "--no_skip_existing"], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert sum(calls(call_log).values()) == 4  # killed before any image was made

    rerun = run(tmp_path, klein)  # a plain rerun continues the regeneration it interrupted
    assert rerun.summary.state == "finished" and rerun.summary.progress.done == 4
    regenerated = {key: n for key, n in calls(call_log).items() if key.endswith("#round1")}
    assert len(regenerated) == 4 and set(regenerated.values()) == {1}, calls(call_log)
    for image in folder(tmp_path).rglob("*.png"):
        with Image.open(image) as opened:
            assert json.loads(opened.text["imggen"])["key"].endswith("#round1")
    run(tmp_path, klein)
    assert sum(calls(call_log).values()) == 8, "nothing is made a third time"
