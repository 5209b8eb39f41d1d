"""The training-set job fully local: FLUX.2 klein (a tiny checkpoint) draws, the hash judge picks, Lanczos
upscales, a folder stores. No key, no server."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from imggen.pipelines.trainset import job_root
from imggen.pipelines.trainset.cli import main as trainset_main
from trainset_fixtures import source_file  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_local_mode_end_to_end_with_no_keys(tmp_path, klein, source_file, monkeypatch, capsys):
    for name in ("REPLICATE_API_TOKEN", "OPENAI_API_KEY", "AWS_ACCESS_KEY", "AWS_USER_FILES_BUCKET",
                 "REPLICATE_BASE_URL", "OPENAI_BASE_URL", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    arguments = ["--source", str(source_file), "--user-id", "me", "--actor-id", "hero", "--target", "6",
                 "--local", "--flux_ckpt", str(klein), "--flux-size", "96", "--flux-steps", "2",
                 "--output", str(tmp_path / "runs"), "--debug-dir", str(tmp_path / "debug")]
    assert trainset_main(arguments) == 0

    folder = job_root(tmp_path / "runs", "me", "hero")
    printed = capsys.readouterr().out.split()
    assert printed == [(folder / f"training-image{i}.jpg").resolve().as_uri() for i in range(1, 7)]
    grids = sorted((tmp_path / "debug").glob("grid*.jpg"))
    assert grids and all(Image.open(g).size == (96, 96) for g in grids)
    drawn = {p: p.stat().st_mtime_ns for p in (folder / "grids").glob("grid*.jpg")}
    for index in range(1, 7):
        with Image.open(folder / f"training-image{index}.jpg") as image:
            assert image.size == (64, 64)  # a 32-pixel tile of the 96-pixel grid, doubled
    record = json.loads((folder / "generation_state.json").read_text())
    assert len(record["completed_samples"]) == 6

    assert trainset_main(arguments) == 0  # a rerun finds everything done and draws nothing
    assert {p: p.stat().st_mtime_ns for p in (folder / "grids").glob("grid*.jpg")} == drawn


def test_a_failed_training_image_is_explained_and_made_with_retry_failed(tmp_path, klein, source_file, monkeypatch, capsys):
    for name in ("REPLICATE_API_TOKEN", "OPENAI_API_KEY", "AWS_USER_FILES_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    arguments = ["--source", str(source_file), "--user-id", "me", "--actor-id", "hero", "--target", "2",
                 "--local", "--flux_ckpt", str(klein), "--flux-size", "96", "--flux-steps", "2",
                 "--output", str(tmp_path / "runs")]
    folder = job_root(tmp_path / "runs", "me", "hero")
    blocker = folder / "training-image1.jpg"
    blocker.mkdir(parents=True)  # the store cannot write the first image: a folder is in its place
    assert trainset_main(arguments) == 1
    err = capsys.readouterr().err
    assert "finished: 1/2 done, 1 failed" in err and "permanent: 1 (first: " in err and "Is a directory" in err
    assert "Traceback" not in err  # the user's to fix, in one line
    assert "rerun with --retry-failed" in err

    blocker.rmdir()  # fixed
    assert trainset_main(arguments) == 1 and not blocker.exists()  # a permanent failure waits to be asked
    assert trainset_main([*arguments, "--retry_failed"]) == 0
    with Image.open(blocker) as image:
        assert image.size == (64, 64)
