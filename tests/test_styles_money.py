"""What ``imggen styles`` says and does about money: the basis of each estimate, budgets spent on what
was billed rather than on worst cases, and models with no published price."""

from __future__ import annotations

import re

import pytest

from imggen.backends.openai_models import get_model
from imggen.pipelines.styles.cli import main
from styles_fixtures import by_style_images, emulator, generations, records, stats, write_records


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_the_budget_is_spent_on_billed_images_and_the_ledger_teaches_the_next_estimate(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    prompts = write_records(tmp_path / "p.json", records(8))
    args = ["--prompts", prompts, "--output", out, "--style", "cartoon", "realistic", "anime"]  # size, quality: auto
    with emulator(monkeypatch) as server:
        code, err = run(capsys, *args, "--budget", "0.5")
        assert re.search(r"estimated cost: at most \$[\d.]+ for all 24 images \(\$0\.1\d\d/image, worst case: ", err), err
        drawn = len(generations(server))
        spent = stats(out)["total_cost_usd"]
        assert code == 2 and f"budget reached: spent ${spent:.2f} of $0.50 in this run" in err
        assert "(worst case: " in err.split("budget reached")[1]
        assert err.count("budget reached:") == 2, err  # when the run stops, and in its summary
        assert re.search(r"\d+/24 done +\d+% ", err), err  # the bar's last line is whole when not on a terminal
        assert drawn == len(by_style_images(out)) and spent <= 0.5
        per_image = spent / drawn
        assert per_image < 0.1  # billed well below the worst case, so the budget bought more than two images
        assert drawn > (0.5 - 0.19) / per_image - 1

        code, err = run(capsys, *args, "--budget", "0.3")  # a second run: its spend, and the folder's
        assert f"(${stats(out)['billed_cost_usd']:.2f} billed in this folder over all runs)" in err
        assert stats(out)["billed_cost_usd"] > spent
        drawn, spent = len(generations(server)), stats(out)["total_cost_usd"]
        per_image = spent / drawn

        code = main([str(a) for a in (*args, "--dry-run")])
        out = capsys.readouterr().out  # the plan is a dry run's output
        assert code == 0
        left = 24 - drawn  # the rerun's estimate counts only what is left to draw
        assert (f"estimated cost: about ${per_image * left:.2f} for the {left} images left of 24 "
                f"(${per_image:.3f}/image, typical: from {drawn} images already billed in this ledger)") in out
        assert len(generations(server)) == drawn  # a dry run sends nothing


def test_a_budget_refuses_a_model_without_a_price_unless_allowed(tmp_path, monkeypatch, capsys):
    assert not get_model("gpt-image-2").price_known
    out = tmp_path / "out"
    prompts = write_records(tmp_path / "p.json", records(2))
    args = ["--prompts", prompts, "--output", out, "--style", "cartoon", "--model", "gpt-image-2", "--budget", "1"]
    with emulator(monkeypatch) as server:
        code, err = run(capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert "cannot start: no published price for gpt-image-2, so --budget cannot cap it" in err
        assert "--allow-unpriced" in err and not generations(server)

        code, err = run(capsys, *args, "--allow_unpriced")
        assert code == 0 and len(generations(server)) == 2
        assert "estimated cost: unknown: gpt-image-2 has no published price" in err
        assert "$0.00 spent and the images of gpt-image-2 at an unknown price" in err
        found = stats(out)
        assert (found["total_cost_usd"], found["unpriced_images"], found["unpriced_models"]) == (0.0, 2, ["gpt-image-2"])


def test_an_answer_billed_but_unusable_is_booked_as_wasted(tmp_path, monkeypatch, capsys):
    """A dall-e-3 URL that expired before it was fetched was paid for all the same: the retry pays again,
    and both bills are in the ledger, the stats and the run's spend."""
    out = tmp_path / "out"
    prompts = write_records(tmp_path / "p.json", records(1))
    args = ["--prompts", prompts, "--output", out, "--style", "cartoon", "--model", "dall-e-3", "--allow-retired",
            "--quality", "standard", "--size", "1024x1024"]
    with emulator(monkeypatch, url_ttl_s=0.0) as server:  # every URL has expired when it is fetched
        code, err = run(capsys, *args)
        billed = len(generations(server))
    assert code == 1 and billed == 3  # three attempts, each answered and billed, none usable
    found = stats(out)
    assert found["billed_cost_usd"] == found["wasted_cost_usd"] == pytest.approx(3 * 0.04)
    assert found["used_cost_usd"] == 0
    assert "$0.12 spent" in err
