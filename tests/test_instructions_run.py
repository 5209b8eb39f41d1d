"""The instruction-image job end to end on the tiny FLUX.2 klein checkpoint (CPU workers, 64x64, 2 steps):
the seed's layout and stats.json, empty instructions, bad records, skipping existing images,
regenerating them, and the same pixels from one worker or two."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imggen.engine.ledger import Ledger
from test_flux2_backend import assert_nearly_identical

from instructions_fixtures import (
    PLANNER, call_log, calls, folder, images_under, noise_image, run, sample_inputs, write_results,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
__all__ = ["call_log"]  # fixtures


def with_bad_records(root: Path) -> Path:
    """Four good questions (2, 1, 0, 1 instructions) then four bad lines (JSON, field, two images)."""
    sample_inputs(root, questions=4)
    results = root / "predicted_instructions" / PLANNER / "results.jsonl"
    broken = root / "datasets" / "eval" / "spatial" / "images" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with open(results, "a") as lines:
        lines.write('{"id": 90, "dataset": "spatial",\n')
        lines.write(json.dumps({"id": 91, "dataset": "spatial", "image_paths": []}) + "\n")
        lines.write(json.dumps({"id": 92, "dataset": "spatial", "image_paths": ["dataset/eval/spatial/images/broken.png"],
                                "instructions": ["draw it"]}) + "\n")
        lines.write(json.dumps({"id": 93, "dataset": "spatial", "image_paths": ["dataset/eval/nowhere.png"],
                                "instructions": ["draw it"]}) + "\n")
    return results


def test_layout_stats_bad_records_skip_and_regenerate(tmp_path, klein, call_log):
    results = with_bad_records(tmp_path)
    first = run(tmp_path, klein)
    out = folder(tmp_path)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "0", "0/img_0.png", "0/img_1.png", "1", "1/img_0.png", "2", "3", "3/img_0.png", "92", "run.log", "stats.json",
    ]
    stats = json.loads((out / "stats.json").read_text())
    assert stats == {
        "summary": {
            "number of 0 generation": 3, "ratio of 0 generation": 3 / 6,
            "number of 1 generation": 2, "ratio of 1 generation": 2 / 6,
            "number of 2 generation": 1, "ratio of 2 generation": 1 / 6,
        },
        "0 generation": [2, 92, 93], "1 generation": [1, 3], "2 generation": [0],
    }
    # Bad records: reported with file:line, counted, and the run went on.
    assert first.summary.state == "finished" and first.summary.progress.done == 4
    assert first.summary.progress.failed == 1  # the unreadable image
    assert sorted(r.source for r in first.bad_records) == [f"{results}:{n}" for n in (5, 6, 8)]
    with Ledger(tmp_path / "generated_images") as ledger:
        (failure,) = ledger.failures()
    assert failure["key"] == "spatial/Planner-7B/flux2-klein-tiny/92/img_0.png"
    assert f"{results}:7" in failure["error"] and "unreadable" in failure["error"]
    global_log = (tmp_path / "generated_images" / "run.log").read_text()
    assert f"bad record {results}:5: not valid JSON" in global_log
    assert "done spatial/Planner-7B/flux2-klein-tiny/0/img_1.png" in (out / "run.log").read_text()
    assert set(calls(call_log).values()) == {1} and len(calls(call_log)) == 4  # 92 fails before the call

    # A rerun generates nothing: the ledger says done.
    second = run(tmp_path, klein)
    assert second.summary.progress.done == 4 and sum(calls(call_log).values()) == 4
    assert json.loads((out / "stats.json").read_text()) == stats

    # Without the ledger, existing valid images are still skipped; a damaged one is made again.
    for name in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm"):
        (tmp_path / "generated_images" / name).unlink(missing_ok=True)
    before = images_under(out)
    (out / "0" / "img_1.png").write_bytes(b"half an image")
    run(tmp_path, klein)
    assert sum(calls(call_log).values()) == 5 and calls(call_log)["spatial/Planner-7B/flux2-klein-tiny/0/img_1.png"] == 2
    assert images_under(out).keys() == before.keys()
    assert all((images_under(out)[name] == before[name]).all() for name in before)  # same seeds, same pixels

    # --no_skip_existing makes every image again, as a new round the ledger records beside the old one.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    regenerated = run(tmp_path, klein, skip_existing=False)
    assert regenerated.summary.progress.done == 4
    assert sum(calls(call_log).values()) == 5 + 4
    assert all(p.stat().st_mtime_ns > stamp for p, stamp in stamps.items())
    with Ledger(tmp_path / "generated_images") as ledger:
        done = set(ledger.keys("done"))
    assert "spatial/Planner-7B/flux2-klein-tiny/3/img_0.png#round1" in done
    assert "spatial/Planner-7B/flux2-klein-tiny/3/img_0.png" in done
    assert json.loads((out / "stats.json").read_text()) == stats
    run(tmp_path, klein)  # a plain rerun keeps the round: nothing to do
    assert sum(calls(call_log).values()) == 9


def test_two_cpu_workers_and_one_give_identical_images(tmp_path, klein):
    inputs = sample_inputs(tmp_path / "inputs", questions=8)
    one = run(inputs, klein, output_root=tmp_path / "one", num_gpus=1)
    two = run(inputs, klein, output_root=tmp_path / "two", num_gpus=2)
    assert one.summary.progress.done == two.summary.progress.done == 12  # 2+1+0 then 1,2,3,1,2
    first, second = images_under(tmp_path / "one"), images_under(tmp_path / "two")
    assert len(first) == 12 and first.keys() == second.keys()
    for name in first:  # one worker has 2 torch threads, two have 1 each: float sums may round one level apart
        assert_nearly_identical(first[name], second[name])
    assert (tmp_path / "two" / "spatial" / PLANNER / "flux2-klein-tiny" / "stats.json").read_text() == \
        (tmp_path / "one" / "spatial" / PLANNER / "flux2-klein-tiny" / "stats.json").read_text()


def test_all_planning_models_and_the_shell_script(tmp_path, klein):
    sample_inputs(tmp_path, planner="PlannerA", questions=2)
    noise_image(tmp_path / "b.png", 3)
    write_results(tmp_path, "PlannerB", [{"id": "q-1", "dataset": "other", "image_paths": ["b.png"],
                                          "instructions": ["one", "two", "three"]}])
    env = {**os.environ, "PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}  # no imggen on PATH: python -m
    script = Path(__file__).parents[1] / "scripts" / "run_image_generation.sh"
    result = subprocess.run(
        ["bash", str(script), "all", "--predicted_instructions_root", str(tmp_path / "predicted_instructions"),
         "--image_root", str(tmp_path), "--output_root", str(tmp_path / "generated_images"), "--flux_ckpt", str(klein),
         "--height", "64", "--width", "64", "--num_inference_steps", "2", "--device", "cpu", "--num_gpus", "1"],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert "finished: 6/6 done" in result.stderr
    out = tmp_path / "generated_images"
    assert json.loads((out / "other/PlannerB/flux2-klein-tiny/stats.json").read_text())["3 generation"] == ["q-1"]
    assert json.loads((out / "spatial/PlannerA/flux2-klein-tiny/stats.json").read_text())["2 generation"] == [0]
    assert (out / "other/PlannerB/flux2-klein-tiny/q-1/img_2.png").is_file()
    assert "PlannerA" not in (out / "other/PlannerB/flux2-klein-tiny/run.log").read_text()
