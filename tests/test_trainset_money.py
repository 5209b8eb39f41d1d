"""The training set's money through the real CLI and clients: storage checked before anything is paid,
unknown prices refused under a budget unless allowed and named in the totals, a failed run's bill."""

from __future__ import annotations

import json

from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO, TOPAZ_IMAGE_UPSCALE, replicate_models
from imggen.pipelines.trainset import job_root
from imggen.pipelines.trainset.cli import main as trainset_main
from trainset_fixtures import services, source_file  # noqa: F401,F811 - fixtures

USER, ACTOR = "user-1", "actor-1"
GRID_PRICE = replicate_models()[FLUX_KONTEXT_PRO].price_usd_per_prediction


def trainset(source_file, tmp_path, *extra: str) -> int:
    return trainset_main(["--source", str(source_file), "--user-id", USER, "--actor-id", ACTOR, "--target", "3",
                          "--output", str(tmp_path / "runs"), *extra])


def test_a_missing_bucket_stops_at_start_and_pays_for_nothing(services, source_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AWS_USER_FILES_BUCKET", "no-such-bucket")
    code = trainset(source_file, tmp_path, "--storage", "s3", "--judge", "hash")
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        "imggen trainset: cannot start: S3 bucket 'no-such-bucket' does not exist (AWS_USER_FILES_BUCKET names it)"]
    assert sum(services.replicate.counts.created.values()) == 0  # not one grid or upscale was paid for


def test_the_write_check_leaves_the_bucket_as_it_was(services, source_file, tmp_path, capsys):
    assert trainset(source_file, tmp_path, "--storage", "s3", "--judge", "hash", "--upscaler", "lanczos") == 0
    keys = sorted(o["Key"] for o in services.s3().list_objects_v2(Bucket="user-files-test")["Contents"])
    made = [f"training-image{i}.{kind}" for i in (1, 2, 3) for kind in ("jpg", "txt")]  # each image and its caption
    assert keys == sorted(f"{USER}/{ACTOR}/{name}" for name in [*made, "metadata.jsonl"])  # no write-check object


def test_a_budget_refuses_an_unknown_price_unless_allowed(services, source_file, tmp_path, capsys):
    assert not replicate_models()[TOPAZ_IMAGE_UPSCALE].price_known
    code = trainset(source_file, tmp_path, "--storage", "local", "--judge", "hash", "--budget", "5")
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"cannot start: {TOPAZ_IMAGE_UPSCALE} has no known price, so --budget cannot cap it" in err
    assert "--allow-unpriced" in err
    assert sum(services.replicate.counts.created.values()) == 0

    code = trainset(source_file, tmp_path, "--storage", "local", "--judge", "hash", "--budget", "5", "--allow_unpriced")
    err = capsys.readouterr().err
    counts = services.replicate.counts
    assert code == 0 and counts.paid[TOPAZ_IMAGE_UPSCALE] == 3
    billed = counts.billed_usd()  # the grids; the upscales' price is unknown
    assert billed == GRID_PRICE * counts.paid[FLUX_KONTEXT_PRO]
    assert (f"billed ${billed:.2f} (used ${billed:.2f}, wasted $0.00) and 3 {TOPAZ_IMAGE_UPSCALE} calls "
            "at an unknown price") in err
    assert f"${billed:.2f} spent and 3 {TOPAZ_IMAGE_UPSCALE} calls at an unknown price" in err
    stats = json.loads((job_root(tmp_path / "runs", USER, ACTOR) / "processing_stats.json").read_text())
    assert stats["billed_cost_usd"] == round(billed, 4)
    assert (stats["unpriced_calls"], stats["unpriced_models"]) == (3, [TOPAZ_IMAGE_UPSCALE])


def test_a_run_that_fails_reports_what_it_was_billed(services, source_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-the-emulators-key")  # the judge is refused after a grid is paid
    code = trainset(source_file, tmp_path, "--storage", "local", "--judge", "gpt", "--upscaler", "lanczos")
    err = capsys.readouterr().err
    billed = services.replicate.counts.billed_usd()
    assert code == 2 and billed >= GRID_PRICE
    assert f"${billed:.2f} spent" in err and "$0.00 spent" not in err
    assert "rerun the same command to continue" not in err
    assert "fix the cause above, then rerun the same command; until then a rerun would stop the same way" in err
