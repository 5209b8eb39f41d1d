"""The training set's vision calls are money too: the gpt judge's and the gpt captions' answers, through the
real CLI and ``openai`` client against the emulator, booked once each in the run folder's ledger and counted
in the stats, the summary, the ledger's task costs (what the budget counts) and, unpriced, as such."""

from __future__ import annotations

import contextlib
import json
import sqlite3

import pytest

from imggen.backends.openai_models import DEFAULT_VISION_MODEL
from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO, TOPAZ_IMAGE_UPSCALE, replicate_models
from imggen.engine.ledger import LEDGER_NAME, Ledger
from imggen.pipelines.trainset import job_root
from imggen.pipelines.trainset.cli import main as trainset_main
from trainset_fixtures import services, source_file  # noqa: F401 - fixtures
from vision_prices import VISION_TEST_PRICES, price_vision_model, usage_cost

USER, ACTOR = "user-1", "actor-1"
GRID_PRICE = replicate_models()[FLUX_KONTEXT_PRO].price_usd_per_prediction


def trainset(source_file, tmp_path, *extra: str) -> int:
    return trainset_main(["--source", str(source_file), "--user-id", USER, "--actor-id", ACTOR, "--target", "3",
                          "--storage", "local", "--upscaler", "lanczos", "--output", str(tmp_path / "runs"), *extra])


def served(services) -> list[dict]:
    """The usage of every vision answer the emulator served (each one billed)."""
    return [r.usage for r in services.openai.requests if r.path == "/v1/chat/completions" and r.status == 200]


def vision_calls(root) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(root / LEDGER_NAME)) as db:
        return db.execute("SELECT task_key, price, state FROM paid_calls WHERE model = ? ORDER BY created_at",
                          (DEFAULT_VISION_MODEL,)).fetchall()


def stats(root) -> dict:
    return json.loads((root / "processing_stats.json").read_text())


def test_judge_and_caption_answers_are_billed_once_each_and_a_rerun_books_none(
        services, source_file, tmp_path, monkeypatch, capsys):  # noqa: F811
    prices = price_vision_model(monkeypatch, DEFAULT_VISION_MODEL, VISION_TEST_PRICES)
    assert trainset(source_file, tmp_path, "--judge", "gpt", "--caption", "gpt") == 0
    err = capsys.readouterr().err
    root = job_root(tmp_path / "runs", USER, ACTOR)
    answers = served(services)
    grids = services.replicate.counts.paid[FLUX_KONTEXT_PRO]
    assert len(answers) == grids + 3  # a verdict per grid, a caption per training image
    vision = sum(usage_cost(usage, prices) for usage in answers)
    replicate = services.replicate.counts.billed_usd()
    assert replicate == GRID_PRICE * grids and vision > 0.01
    booked = vision_calls(root)
    assert len(booked) == len(answers) and {state for _, _, state in booked} == {"used"}
    captioned = [path.stem for path in (root / "captions" / "gpt").glob("*.txt")]  # upscale-{grid}-{tile}
    assert sorted(key for key, _, _ in booked) == sorted([f"grid-{n}" for n in range(1, grids + 1)] + captioned)
    assert sum(price for _, price, _ in booked) == pytest.approx(vision)

    total = replicate + vision
    found = stats(root)
    assert found["billed_cost_usd"] == pytest.approx(total, abs=1e-4)
    assert found["used_cost_usd"] == found["billed_cost_usd"] and found["wasted_cost_usd"] == 0.0
    assert found["billed_calls"] == grids + len(answers) and found["unpriced_calls"] == 0
    assert f"billed ${total:.2f} (used ${total:.2f}, wasted $0.00)" in err
    assert f"${total:.2f} spent" in err
    with Ledger(root) as ledger:  # the training images' costs, which the budget adds up, hold every answer
        assert ledger.totals()["cost"] == pytest.approx(total)

    assert trainset(source_file, tmp_path, "--judge", "gpt", "--caption", "gpt") == 0  # the same command again
    capsys.readouterr()
    assert served(services) == answers  # the saved verdicts and captions are reused: nothing is asked
    assert vision_calls(root) == booked
    assert stats(root)["billed_cost_usd"] == found["billed_cost_usd"]


def test_a_refused_caption_falls_back_to_the_description_and_is_billed_as_wasted(
        services, source_file, tmp_path, monkeypatch, capsys):  # noqa: F811
    prices = price_vision_model(monkeypatch, DEFAULT_VISION_MODEL, VISION_TEST_PRICES)
    services.openai.refuse_next()
    assert trainset(source_file, tmp_path, "--judge", "hash", "--caption", "gpt") == 0
    err = capsys.readouterr().err
    root = job_root(tmp_path / "runs", USER, ACTOR)
    answers = [r for r in services.openai.requests if r.path == "/v1/chat/completions" and r.status == 200]
    assert len(answers) == 3 and [state for _, _, state in vision_calls(root)].count("wasted") == 1
    refused = sum(usage_cost(r.usage, prices) for r in answers if r.refused)
    used = sum(usage_cost(r.usage, prices) for r in answers if not r.refused)
    replicate = services.replicate.counts.billed_usd()
    found = stats(root)
    assert found["wasted_cost_usd"] == pytest.approx(refused, abs=1e-4)
    assert found["billed_cost_usd"] == pytest.approx(replicate + refused + used, abs=1e-4)
    assert f"wasted ${refused:.2f})" in err
    captions = [(root / f"training-image{i}.txt").read_text(encoding="utf-8") for i in (1, 2, 3)]
    assert sum(" picture in mostly " not in caption for caption in captions) == 1  # the description stood in


def test_answers_of_unknown_cost_are_counted_as_such_never_as_free(
        services, source_file, tmp_path, capsys):  # noqa: F811
    # gpt-4.1-mini has no published price in the registry; then a priced model's answers come without usage
    assert trainset(source_file, tmp_path, "--judge", "gpt", "--caption", "gpt") == 0
    err = capsys.readouterr().err
    root = job_root(tmp_path / "runs", USER, ACTOR)
    answers = served(services)
    replicate = services.replicate.counts.billed_usd()
    found = stats(root)
    assert found["billed_cost_usd"] == pytest.approx(replicate, abs=1e-4)
    assert (found["unpriced_calls"], found["unpriced_models"]) == (len(answers), [DEFAULT_VISION_MODEL])
    assert f"billed ${replicate:.2f}" in err
    assert f"and {len(answers)} {DEFAULT_VISION_MODEL} calls at an unknown price" in err
    assert [price for _, price, _ in vision_calls(root)] == [None] * len(answers)


def test_a_priced_models_answer_without_usage_is_of_unknown_cost(
        services, source_file, tmp_path, monkeypatch, capsys):  # noqa: F811
    price_vision_model(monkeypatch, DEFAULT_VISION_MODEL, VISION_TEST_PRICES)
    services.openai.set_chat_usage("none")
    assert trainset(source_file, tmp_path, "--judge", "hash", "--caption", "gpt") == 0
    capsys.readouterr()
    found = stats(job_root(tmp_path / "runs", USER, ACTOR))
    assert (found["unpriced_calls"], found["unpriced_models"]) == (3, [DEFAULT_VISION_MODEL])
    assert found["billed_cost_usd"] == pytest.approx(services.replicate.counts.billed_usd(), abs=1e-4)


def test_the_summary_counts_each_unpriced_model_apart(services, source_file, tmp_path, capsys):  # noqa: F811
    assert trainset(source_file, tmp_path, "--judge", "gpt", "--upscaler", "topaz") == 0  # the defaults with a key
    err = capsys.readouterr().err
    answers, upscales = len(served(services)), services.replicate.counts.paid[TOPAZ_IMAGE_UPSCALE]
    assert f"and {answers} {DEFAULT_VISION_MODEL} and {upscales} {TOPAZ_IMAGE_UPSCALE} calls at an unknown price" in err
    found = stats(job_root(tmp_path / "runs", USER, ACTOR))
    assert found["unpriced_by_model"] == {DEFAULT_VISION_MODEL: answers, TOPAZ_IMAGE_UPSCALE: upscales}


def test_a_budget_refuses_an_unpriced_vision_model_unless_allowed(services, source_file, tmp_path, capsys):  # noqa: F811
    code = trainset(source_file, tmp_path, "--judge", "gpt", "--budget", "5")
    err = capsys.readouterr().err
    assert code == 2 and f"cannot start: {DEFAULT_VISION_MODEL} has no known price, so --budget cannot cap it" in err
    assert "--judge hash" in err
    assert served(services) == [] and sum(services.replicate.counts.created.values()) == 0

    assert trainset(source_file, tmp_path, "--judge", "gpt", "--budget", "5", "--allow-unpriced") == 0
    assert f"{len(served(services))} {DEFAULT_VISION_MODEL} calls at an unknown price" in capsys.readouterr().err
