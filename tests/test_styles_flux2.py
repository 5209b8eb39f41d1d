"""The style matrix on the local FLUX.2 klein backend: a tiny checkpoint built by the project, no key, no network."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from styles_fixtures import by_style_images, png_text, provenance, records, write_records

import imggen
from imggen.engine.ledger import Ledger
from imggen.pipelines.styles.cli import main

pytestmark = pytest.mark.timeout(180)


@pytest.mark.slow
def test_the_matrix_runs_on_a_local_checkpoint_without_a_key(tmp_path, monkeypatch, capsys, klein):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    prompts = write_records(tmp_path / "p.json", records(2, dataset="simpa"))
    args = ["--prompts", str(prompts), "--output", str(out), "--backend", "flux2", "--flux_ckpt", str(klein),
            "--size", "64x64", "--flux-steps", "2", "--style", "cartoon", "realistic"]
    assert main(args) == 0, capsys.readouterr().err
    assert "finished: 4/4 done" in capsys.readouterr().err

    images = by_style_images(out)
    assert len(images) == 4
    first = out / "images/by_style/cartoon/simpa_000_cartoon.png"
    assert os.path.samefile(first, out / "images/by_dataset/simpa/simpa_000_cartoon.png")
    text = provenance(first)
    parameters = text["parameters"]
    assert text["model"] == "flux2-klein-tiny" and text["style"] == "cartoon" and "sample text number 0" in text["prompt"]
    assert parameters["steps"] == 2 and (parameters["width"], parameters["height"]) == (64, 64)
    assert png_text(first)["parameters"] == (
        f"{text['prompt']}\nSteps: 2, Sampler: Euler, CFG scale: {parameters['guidance']}, Seed: {parameters['seed']}, "
        f"Size: 64x64, Model: flux2-klein-tiny, Version: imggen {imggen.__version__}")
    seeds = {provenance(path)["parameters"]["seed"] for path in images}
    assert len(seeds) == 4, "each image has its own seed"
    metadata = [json.loads(line) for line in (out / "images/metadata.jsonl").read_text().splitlines()]
    assert {row["model"] for row in metadata} == {"flux2-klein-tiny"} and len(metadata) == 4

    with Ledger(out) as ledger:
        attempts = ledger.totals()["attempts"]
    assert main(args) == 0
    with Ledger(out) as ledger:
        assert ledger.totals()["attempts"] == attempts, "a rerun draws nothing again"


@pytest.mark.slow
def test_a_size_the_model_cannot_take_stops_at_start(tmp_path, capsys, klein):
    prompts = write_records(tmp_path / "p.json", records(1))
    code = main(["--prompts", str(prompts), "--output", str(tmp_path / "out"), "--backend", "flux2",
                 "--flux_ckpt", str(klein), "--size", "60x60"])
    assert code == 2 and "not a positive multiple of 16" in capsys.readouterr().err
    assert main(["--prompts", str(prompts), "--output", str(tmp_path / "out"), "--backend", "flux2"]) == 2
    assert "needs a checkpoint folder" in capsys.readouterr().err


@pytest.mark.slow
def test_a_checkpoint_no_worker_can_load_ends_the_run_with_the_reason(tmp_path, capsys, klein):
    damaged = tmp_path / "damaged"
    shutil.copytree(klein, damaged)
    (weights,) = (damaged / "transformer").glob("*.safetensors")
    weights.write_bytes(weights.read_bytes()[:100])  # cut short, as an interrupted download leaves it
    out = tmp_path / "out"
    prompts = write_records(tmp_path / "p.json", records(2))
    args = ["--prompts", str(prompts), "--output", str(out), "--backend", "flux2", "--flux_ckpt", str(damaged),
            "--size", "64x64", "--flux-steps", "2", "--style", "cartoon"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "fatal: 0/2 done" in err and "could not load the model" in err.splitlines()[-2]
    assert "No such file" not in err  # the reason, not a file the failed run did not write
    assert json.loads((out / "images" / "processing_stats.json").read_text())["successful_downloads"] == 0
