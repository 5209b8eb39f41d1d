"""The training set against a Replicate that misbehaves as the contract allows: nothing is paid twice, money is as billed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO, TOPAZ_IMAGE_UPSCALE, replicate_models
from imggen.emulators.fault_plan import FaultRates
from imggen.emulators.replicate_faults import ReplicateFaults
from imggen.pipelines.trainset import TrainingDataGenerator, job_root
from imggen.pipelines.trainset.cli import main as trainset_main
from trainset_fixtures import running_services, services, source_file, use_services  # noqa: F401 - fixtures

USER, ACTOR = "u1", "a1"
GRID_PRICE = replicate_models()[FLUX_KONTEXT_PRO].price_usd_per_prediction


def build(tmp_path: Path, target: int) -> dict:
    made = TrainingDataGenerator(work_dir=tmp_path / "runs", judge="gpt", storage="s3")
    made.target_training_images = target
    made.choices = dataclasses.replace(made.choices, replicate_wait_s=None)  # every prediction is polled
    return made.generate_training_data(str(tmp_path / "source.png"), USER, ACTOR)


def vision_answers(started) -> int:
    """The judge's answers the OpenAI emulator served (each billed, at a price the registry does not know)."""
    return sum(r.path == "/v1/chat/completions" and r.status == 200 for r in started.openai.requests)


def stats(tmp_path: Path) -> dict:
    return json.loads((job_root(tmp_path / "runs", USER, ACTOR) / "processing_stats.json").read_text())


def test_poll_errors_and_dropped_connections_never_pay_for_a_prediction_again(monkeypatch, source_file, tmp_path):
    faults = ReplicateFaults(FaultRates(server_error=0.2, drop=0.1), seed=3)
    with running_services(faults=faults) as started:
        use_services(started, monkeypatch, tmp_path)
        for kind in ("server_error", "overloaded", "drop", "server_error"):  # the first polls of all fail
            started.replicate.fail_polls(kind)
        result = build(tmp_path, 20)
        counts, met = started.replicate.counts, started.replicate.faults.poll_faults
        answers = vision_answers(started)
    assert result["total_training_images"] == 20 and result["total_grids_generated"] == 3 and answers == 3
    assert met["drop"] >= 1 and met["server_error"] + met["overloaded"] >= 3
    assert counts.created == {FLUX_KONTEXT_PRO: 3, TOPAZ_IMAGE_UPSCALE: 20} == counts.paid
    money = stats(tmp_path)
    assert (money["billed_calls"], money["wasted_calls"], money["open_calls"]) == (23 + answers, 0, 0)
    assert money["total_cost_usd"] == pytest.approx(counts.billed_usd())


def test_a_throttled_create_is_not_sent_again_before_its_retry_after(monkeypatch, source_file, tmp_path):
    # A low-credit account: at most 6 creates in any second, plus random 429s in every documented form.
    # The first grid's create is throttled for 2 s; the other grids finish within that time, and their
    # tiles' upscales must wait for it too (the limit is the account's, not the grid's).
    faults = ReplicateFaults(throttle_rate=0.15, throttle_s=1, seed=5)
    with running_services(grid_latency_s=0.6, create_limit_per_min=6, create_window_s=1.0, faults=faults) as started:
        use_services(started, monkeypatch, tmp_path)
        started.replicate.reject_creates(1, 429, retry_after_s=2, form="http_date")
        result = build(tmp_path, 20)
        counts, early = started.replicate.counts, started.replicate.faults.early_creates
    print(f"throttled {counts.throttled}, early {early}, created {dict(counts.created)}")
    assert result["total_training_images"] == 20
    assert counts.throttled >= 5 and early == 0
    assert counts.created == {FLUX_KONTEXT_PRO: 3, TOPAZ_IMAGE_UPSCALE: 20}
    assert stats(tmp_path)["rate_limit_hits"] >= 1


def test_an_output_that_expired_before_its_download_is_billed_as_wasted(services, source_file, tmp_path):
    services.replicate.script(FLUX_KONTEXT_PRO, "expired")
    result = build(tmp_path, 9)
    counts = services.replicate.counts
    assert result["total_training_images"] == 9 and counts.expired_downloads >= 1
    assert counts.paid[FLUX_KONTEXT_PRO] == 2  # the expired one was billed, and one more made the grid
    money = stats(tmp_path)
    assert money["total_cost_usd"] == pytest.approx(counts.billed_usd())  # $0.08 billed, not the $0.04 used
    assert money["billed_cost_usd"] == money["total_cost_usd"]
    assert money["wasted_cost_usd"] == pytest.approx(GRID_PRICE) and money["used_cost_usd"] == pytest.approx(GRID_PRICE)
    answers = vision_answers(services)  # the judge's, one per grid delivered
    assert answers == 1 and (money["billed_calls"], money["used_calls"], money["wasted_calls"]) == (12, 11, 1)


def test_the_cli_summary_shows_billed_used_and_wasted_money(services, source_file, tmp_path, capsys):
    services.replicate.script(FLUX_KONTEXT_PRO, "expired")
    code = trainset_main(["--source", str(source_file), "--user-id", USER, "--actor-id", ACTOR, "--target", "3",
                          "--judge", "hash", "--upscaler", "lanczos", "--storage", "local",
                          "--output", str(tmp_path / "runs")])
    assert code == 0
    assert "billed $0.08 (used $0.04, wasted $0.04)" in capsys.readouterr().err.replace("\n", "")
