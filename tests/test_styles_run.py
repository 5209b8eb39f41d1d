"""``imggen styles`` against a local OpenAI emulator: the seed's layout, provenance, resume, failures, budget, safety."""

from __future__ import annotations

import json
import os
import time

import pytest
from PIL import Image
from styles_fixtures import (
    API_KEY, CHEAP, SAMPLE_PROMPTS, by_style_images, emulator, generations, png_text, provenance, records, stats,
    successful_prompts, write_records,
)

import imggen
from imggen.engine.ledger import Ledger
from imggen.pipelines.styles.cli import main
from imggen.storage.atomic import is_valid_image


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_every_sample_in_every_style_lands_in_both_places_with_provenance(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    with emulator(monkeypatch) as server:
        code, err = run(capsys, "--prompts", SAMPLE_PROMPTS, "--output", out, "--datasets", "wikipedia", "asset",
                        "--max-samples", "2", "--style", "cartoon", "realistic", "pixel_art", *CHEAP)
        assert code == 0, err
        assert "finished: 12/12 done" in err
        assert len(generations(server)) == 12

        stored = by_style_images(out)
        assert len(stored) == 12
        first = out / "images/by_style/cartoon/wikipedia_001_cartoon.png"
        twin = out / "images/by_dataset/wikipedia/wikipedia_001_cartoon.png"
        assert os.path.samefile(first, twin)
        assert len(list((out / "images/by_dataset").rglob("*.png"))) == 12
        text = provenance(first)
        assert text["style"] == "cartoon" and text["dataset"] == "wikipedia" and text["sample_id"] == "001"
        assert text["model"] == "gpt-image-2.6-sunburst"
        assert "Eiffel Tower" in text["prompt"] and text["prompt"] in successful_prompts(server)
        assert text["parameters"]["quality"] == "low"
        with Image.open(first) as image:
            size = f"{image.width}x{image.height}"
        # what image browsers show: the prompt, then the A1111-style settings line
        assert png_text(first)["parameters"] == (f"{text['prompt']}\nSize: {size}, Model: gpt-image-2.6-sunburst, "
                                                 f"Quality: low, Version: imggen {imggen.__version__}")

        state = json.loads((out / "code/generation_state.json").read_text())
        assert len(state["completed_samples"]) == 12 and "wikipedia_001_cartoon" in state["completed_samples"]
        assert stats(out)["successful_downloads"] == 12 and stats(out)["total_cost_usd"] > 0

        again, err = run(capsys, "--prompts", SAMPLE_PROMPTS, "--output", out, "--datasets", "wikipedia", "asset",
                         "--max-samples", "2", "--style", "cartoon", "realistic", "pixel_art", *CHEAP)
        assert again == 0 and "finished: 12/12 done" in err
        assert len(generations(server)) == 12, "a rerun must not pay again"


def test_metadata_loads_with_the_datasets_imagefolder_builder(tmp_path, monkeypatch, capsys):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "out"
    with emulator(monkeypatch):
        code, err = run(capsys, "--prompts", SAMPLE_PROMPTS, "--output", out, "--max-samples", "1",
                        "--style", "cartoon", "watercolor", *CHEAP)
    assert code == 0, err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = datasets.load_dataset("imagefolder", data_dir=str(out / "images"), cache_dir=str(tmp_path / "hf"))["train"]
    assert loaded.num_rows == 8  # one sample of each of four datasets, two styles; the by-dataset twins are not rows
    assert {"image", "prompt", "style", "dataset", "sample_id", "text", "model"} <= set(loaded.column_names)
    rows = {(row["dataset"], row["sample_id"], row["style"]): row for row in loaded}
    assert set(rows) == {(d, "001", s) for d in ("wikipedia", "asset", "simpa", "onestop") for s in ("cartoon", "watercolor")}
    row = rows[("simpa", "001", "watercolor")]
    assert row["prompt"] == provenance(out / "images/by_style/watercolor/simpa_001_watercolor.png")["prompt"]
    assert row["image"].size == (16, 16)


def test_dry_run_sends_nothing_and_prints_count_and_cost(tmp_path, monkeypatch, capsys):
    with emulator(monkeypatch) as server:
        code = main([str(a) for a in ("--prompts", SAMPLE_PROMPTS, "--output", tmp_path / "out", "--dry-run", *CHEAP)])
        printed = capsys.readouterr()
        assert code == 0
        assert "120 images: 12 samples" in printed.out and "estimated cost: at most $" in printed.out  # its output
        assert "estimated cost" not in printed.err and "dry run: nothing was sent" in printed.err
        assert server.requests == []
    assert not (tmp_path / "out").exists()


def test_missing_key_stops_before_anything_runs(tmp_path, monkeypatch, capsys):
    with emulator() as server:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.chdir(tmp_path)  # no .env here
        code, err = run(capsys, "--prompts", SAMPLE_PROMPTS, "--output", tmp_path / "out")
        assert code == 2 and "no OpenAI API key: set OPENAI_API_KEY" in err
        assert server.requests == [] and not (tmp_path / "out").exists()


def test_a_retired_model_fails_at_start_naming_its_replacements(tmp_path, monkeypatch, capsys):
    with emulator(monkeypatch) as server:
        code, err = run(capsys, "--prompts", SAMPLE_PROMPTS, "--output", tmp_path / "out", "--model", "gpt-image-1")
        assert code == 2 and "shut down" in err and "gpt-image-2.5-sunburst or gpt-image-2.5-flare" in err
        code, err = run(capsys, "--prompts", SAMPLE_PROMPTS, "--output", tmp_path / "out", "--size", "17x17")
        assert code == 2 and "does not accept size='17x17'" in err
        assert server.requests == []


def test_dall_e_3_runs_as_the_legacy_contract_with_the_seeds_parameters(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    with emulator(monkeypatch) as server:
        code, err = run(capsys, "--prompts", SAMPLE_PROMPTS, "--output", out, "--model", "dall-e-3", "--allow-retired",
                        "--max-samples", "1", "--datasets", "onestop", "--style", "anime", "--budget", "1")
        assert code == 0, err
        text = provenance(out / "images/by_style/anime/onestop_001_anime.png")
        assert text["parameters"] == {"model": "dall-e-3", "size": "1024x1024", "quality": "hd",
                                                  "style": "vivid"}
        assert "telescopes" in text["revised_prompt"] and text["revised_prompt"] != text["prompt"]
        assert stats(out)["total_cost_usd"] == 0.08  # the seed's HD price
        assert [r.path for r in server.requests] == ["/v1/images/generations", "/files/" + server.requests[1].path.split("/")[-1]]


def test_content_policy_refusals_are_recorded_as_failed_and_asked_once(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    prompts = write_records(tmp_path / "p.json", [*records(2), {"dataset": "asset", "sample_id": "9",
                                                                 "text": "a BLOCKED_PROMPT scene"}])
    args = ["--prompts", prompts, "--output", out, "--style", "cartoon", "sketch", *CHEAP]
    with emulator(monkeypatch) as server:
        code, err = run(capsys, *args)
        assert code == 1 and "finished: 4/6 done, 2 failed" in err
        # the server's text is shown as it is (rich would read "[violence]" as a style), and the summary
        # names the kind of failure, how many, and how to try them again
        assert err.count("safety_violations=[violence]") == 3  # each failure, and the summary's first
        assert "permanent: 2 (first: OpenAI refused the prompt (moderation_blocked)" in err
        assert "rerun with --retry-failed" in err
        blocked = [r for r in generations(server) if "BLOCKED_PROMPT" in r.prompt]
        assert len(blocked) == 2 and {r.status for r in blocked} == {400}
        with Ledger(out) as ledger:
            failures = ledger.failures()
        assert {f["key"] for f in failures} == {"asset_9_cartoon", "asset_9_sketch"}
        assert all(f["error_kind"] == "permanent" and "refused the prompt" in f["error"] for f in failures)
        assert stats(out)["failed_downloads"] == 2
        code, _ = run(capsys, *args)
        assert code == 1 and len(generations(server)) == 6, "a refused prompt is not asked again"
        code, _ = run(capsys, *args, "--retry_failed")  # either spelling
        assert code == 1 and len(generations(server)) == 8, "asked again when told to"


def test_quota_exhaustion_stops_cleanly_and_a_rerun_finishes_the_rest(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    prompts = write_records(tmp_path / "p.json", records(5))
    args = ["--prompts", prompts, "--output", out, "--style", "cartoon", "realistic", "anime", "--concurrency", "3", *CHEAP]
    with emulator(monkeypatch, quota_images=4) as server:
        code, err = run(capsys, *args)
        assert code == 2 and "quota exhausted" in err and "rerun the same command" in err
        assert len(by_style_images(out)) == 4
        with Ledger(out) as ledger:
            assert ledger.counts() == {"pending": 11, "running": 0, "done": 4, "failed": 0}
        server.set_quota(None)
        code, err = run(capsys, *args)
        assert code == 0 and "finished: 15/15 done" in err
        assert len(by_style_images(out)) == 15
        assert sum(successful_prompts(server).values()) == 15
        assert max(successful_prompts(server).values()) == 1


def test_budget_is_a_hard_cap_and_a_larger_one_continues(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    prompts = write_records(tmp_path / "p.json", records(4))
    args = ["--prompts", prompts, "--output", out, "--style", "cartoon", "realistic", "anime", *CHEAP]
    with emulator(monkeypatch) as server:
        code, err = run(capsys, *args, "--budget", "0.03")
        assert code == 2 and "budget reached: spent $" in err and " of $0.03 in this run" in err
        spent = stats(out)["total_cost_usd"]
        done = stats(out)["successful_downloads"]
        assert 0 < spent <= 0.03 and 0 < done < 12
        assert len(generations(server)) == done == len(by_style_images(out))
        code, err = run(capsys, *args, "--budget", "1")
        assert code == 0 and "finished: 12/12 done" in err and len(generations(server)) == 12


def test_bad_records_are_reported_and_the_good_ones_run(tmp_path, monkeypatch, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"dataset": "wikipedia", "sample_id": "1", "text": "a fox"}\n'
                       '{"dataset": "wikipedia", "sample_id": "2"}\n'
                       'not json at all\n'
                       '{"dataset": "simpa", "sample_id": "3", "text": "a cat"}\n')
    with emulator(monkeypatch):
        code, err = run(capsys, "--prompts", prompts, "--output", tmp_path / "out", "--style", "cartoon", *CHEAP)
    assert code == 1 and "finished: 2/2 done" in err and "skipped: 2 input record(s)" in err  # not every row drawn
    assert f"skipped: {prompts}, line 2: missing text" in err
    assert f"skipped: {prompts}, line 3: not valid JSON" in err
    assert [p.name for p in by_style_images(tmp_path / "out")] == ["simpa_3_cartoon.png", "wikipedia_1_cartoon.png"]


def test_hostile_names_stay_inside_the_output_folder(tmp_path, monkeypatch, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    out = tmp_path / "nest" / "out"
    hostile = ["../x", "/etc/passwd", "..", "../../../../tmp/escape", "a/../../b"]
    prompts = write_records(inputs / "p.json", [{"dataset": name, "sample_id": name, "text": "t"} for name in hostile])
    styles = inputs / "styles.json"
    styles.write_text(json.dumps({"styles": {"../up": "{text}", "/abs": "an {text}"}}))
    before = {p for p in tmp_path.rglob("*")}
    with emulator(monkeypatch):
        code, err = run(capsys, "--prompts", prompts, "--styles", styles, "--output", out, *CHEAP)
    assert code == 0 and "finished: 10/10 done" in err
    created = {p for p in tmp_path.rglob("*")} - before
    assert created and all(p == out or out in p.parents or p == out.parent for p in created)
    images = by_style_images(out)
    assert len(images) == 10 and all(is_valid_image(p) for p in images)
    assert not os.path.exists("/tmp/escape")


def test_the_key_never_reaches_output_files(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    prompts = write_records(tmp_path / "p.json", records(2))
    with emulator(monkeypatch, api_key="sk-the-right-one-000") as server:
        code, err = run(capsys, "--prompts", prompts, "--output", out, "--style", "cartoon", "--concurrency", "1", *CHEAP)
        assert code == 2 and "rejected the API key" in err and API_KEY not in err
        assert len(generations(server)) == 1  # a bad key is fatal: one request, no more
    for path in out.rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), path


def test_a_stalled_request_is_retried_after_the_request_timeout(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    prompts = write_records(tmp_path / "p.json", records(2))
    with emulator(monkeypatch, slow_s=60.0) as server:
        server.fail_next("slow")  # the first request stalls for a minute
        began = time.monotonic()
        code, err = run(capsys, "--prompts", prompts, "--output", out, "--style", "cartoon", "--concurrency", "1",
                        "--request-timeout", "0.5", *CHEAP)
        assert code == 0 and "finished: 2/2 done" in err
        assert time.monotonic() - began < 15  # not the stall's minute, nor a fixed 180 s
        assert len(by_style_images(out)) == 2
        assert [r.status for r in generations(server)] == [None, 200, 200]  # the stalled one got no answer


def test_a_request_timeout_must_be_positive(tmp_path, monkeypatch, capsys):
    prompts = write_records(tmp_path / "p.json", records(1))
    with emulator(monkeypatch) as server:
        code, err = run(capsys, "--prompts", prompts, "--output", tmp_path / "out", "--request-timeout", "0", *CHEAP)
        assert code == 2 and "request-timeout" in err and generations(server) == []


def test_a_run_that_skipped_input_rows_counts_them_after_the_summary_and_exits_1(tmp_path, monkeypatch, capsys):
    prompts = tmp_path / "p.csv"
    prompts.write_text("dataset,sample_id,text\nwikipedia,1,a lighthouse\nwikipedia,2,\nwikipedia,3,a harbour\n")
    with emulator(monkeypatch) as server:
        code, err = run(capsys, "--prompts", prompts, "--output", tmp_path / "out", "--style", "sketch", *CHEAP)
        assert len(generations(server)) == 2
    assert "skipped: " in err and "line 3: missing text" in err  # named before the run
    summary = err[err.index("finished: 2/2 done"):]
    assert "skipped: 1 input record(s), listed before the run" in summary
    assert code == 1
