"""The training set's money through the real CLI and clients: storage checked before anything is paid,
unknown prices refused under a budget unless allowed and named in the totals, a budget that caps what
is billed (grids no image pays for included), a failed run's bill."""

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


def test_a_budget_caps_what_the_run_is_billed_and_a_rerun_goes_on(services, source_file, tmp_path, capsys):
    args = ["--storage", "local", "--judge", "hash", "--upscaler", "lanczos", "--target", "30", "--budget", "0.05"]
    stored = job_root(tmp_path / "runs", USER, ACTOR)
    code = trainset(source_file, tmp_path, *args)  # 30 images want four grids at once; $0.05 pays for one
    err = capsys.readouterr().err
    counts = services.replicate.counts
    assert code == 2 and counts.paid[FLUX_KONTEXT_PRO] == 1 and counts.billed_usd() <= 0.05
    assert (f"budget reached: spent ${GRID_PRICE:.2f} of $0.05 in this run (calls in flight included), and the "
            f"next {FLUX_KONTEXT_PRO} prediction costs ${GRID_PRICE:.2f}") in err
    made = sorted(stored.glob("training-image*.jpg"))
    assert 0 < len(made) <= 9, "the grid that was paid for is used before the run stops"
    assert f"budget: {len(made)}/30 done, 0 failed, {30 - len(made)} pending, ${GRID_PRICE:.2f} spent" in err

    code = trainset(source_file, tmp_path, *args)  # a budget counts one run: the rerun may spend $0.05 again
    capsys.readouterr()
    assert code == 2 and counts.paid[FLUX_KONTEXT_PRO] == 2 and counts.billed_usd() <= 0.10
    assert len(list(stored.glob("training-image*.jpg"))) > len(made)


def test_a_grid_that_failed_unbilled_gives_its_price_back_to_the_budget(services, source_file, tmp_path, capsys):
    services.replicate.script(FLUX_KONTEXT_PRO, "failed")  # Replicate bills only succeeded predictions
    code = trainset(source_file, tmp_path, "--storage", "local", "--judge", "hash", "--upscaler", "lanczos",
                    "--target", "30", "--budget", "0.05")
    capsys.readouterr()
    counts = services.replicate.counts
    assert code == 2 and counts.created[FLUX_KONTEXT_PRO] == 2 and counts.paid[FLUX_KONTEXT_PRO] == 1
    assert list(job_root(tmp_path / "runs", USER, ACTOR).glob("training-image*.jpg")), "the second grid was drawn"
