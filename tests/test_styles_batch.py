"""``imggen styles --mode batch`` against the emulator's Batch API, with the real openai client: the same files
as a synchronous run at half the price, partial failures, expiry, stop and resume, cancel, pause and budget."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from PIL import Image
from styles_fixtures import CHEAP, by_style_images, emulator, generations, png_text, provenance, records, stats, write_records

from imggen.backends.openai_models import batch_terms
from imggen.emulators.openai_batch_store import BatchEmulatorConfig
from imggen.emulators.openai_replies import DroppedConnection
from imggen.engine.control import RunControl
from imggen.engine.ledger import Ledger
from imggen.pipelines.styles import StyleRequest, plan_styles, run_styles
from imggen.pipelines.styles.batch_requests import batch_price
from imggen.pipelines.styles.cli import main

BATCH = ["--mode", "batch", "--poll-seconds", "0.05"]


def _request(prompts, out, **options) -> StyleRequest:
    settings = {"size": "1024x1024", "quality": "low", "mode": "batch", "poll_s": 0.05, **options}
    return StyleRequest(prompts=prompts, output=out, **settings)


def _run(request: StyleRequest, control: RunControl | None = None):
    return asyncio.run(run_styles(request, control=control, on_problem=lambda problem: None)).summary


@pytest.mark.slow
def test_a_200_image_batch_run_makes_the_same_files_as_a_synchronous_run_at_half_the_price(tmp_path, monkeypatch):
    prompts = write_records(tmp_path / "prompts.json", records(20))
    sync_out, batch_out = tmp_path / "sync", tmp_path / "batch"
    with emulator(monkeypatch) as server:
        assert main(["--prompts", str(prompts), "--output", str(sync_out), *CHEAP]) == 0
        synchronous_calls = len(generations(server))
        assert main(["--prompts", str(prompts), "--output", str(batch_out), *CHEAP, *BATCH, "--batch-size", "64"]) == 0
        assert len(generations(server)) == synchronous_calls == 200  # batch mode made no synchronous call
        assert len(server.batches.batches) == 4  # 200 requests in batches of at most 64
        assert set(server.batches.submitted.values()) == {1} and len(server.batches.submitted) == 200
    sync_images = [path.relative_to(sync_out) for path in by_style_images(sync_out)]
    assert len(sync_images) == 200
    assert [path.relative_to(batch_out) for path in by_style_images(batch_out)] == sync_images
    multiplier = batch_terms().price_multiplier
    for relative in sync_images:  # the same picture and provenance; only the price paid differs
        batch_text, sync_text = png_text(batch_out / relative), png_text(sync_out / relative)
        assert float(batch_text.pop("cost_usd")) == pytest.approx(float(sync_text.pop("cost_usd")) * multiplier,
                                                                   abs=2e-6), relative
        assert batch_text == sync_text, relative
        with Image.open(batch_out / relative) as batch_image, Image.open(sync_out / relative) as sync_image:
            assert batch_image.tobytes() == sync_image.tobytes(), relative
    assert provenance(batch_out / sync_images[0])["prompt"]
    metadata = (batch_out / "images" / "metadata.jsonl").read_text()
    assert metadata == (sync_out / "images" / "metadata.jsonl").read_text() and metadata.count("\n") == 200
    linked = batch_out / "images" / "by_dataset" / "wikipedia" / sync_images[0].name
    assert linked.read_bytes() == (batch_out / sync_images[0]).read_bytes()
    with Ledger(sync_out) as sync_ledger, Ledger(batch_out) as batch_ledger:
        sync_cost, batch_cost = sync_ledger.totals()["cost"], batch_ledger.totals()["cost"]
    assert sync_cost > 0 and batch_cost == pytest.approx(sync_cost * multiplier)
    assert stats(batch_out)["total_cost_usd"] == round(batch_cost, 4)


def test_the_dry_run_shows_both_prices_and_what_the_budget_lets_through(tmp_path, capsys):
    prompts = write_records(tmp_path / "prompts.json", records(4))
    out = tmp_path / "out"
    plan = plan_styles(_request(prompts, out))
    synchronous = plan.estimated_cost
    budget = sum(batch_price(task) for task in plan.tasks[:20]) + batch_price(plan.tasks[20]) / 2
    assert main(["--prompts", str(prompts), "--output", str(out), *CHEAP, *BATCH, "--budget", f"{budget:.6f}",
                 "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert f"estimated cost: at most ${synchronous:.2f} for all 40 images" in printed
    assert f"batch price: at most ${synchronous / 2:.2f} for all 40 images (0.5 x the synchronous price" in printed
    assert "20 of 40 images fit at the batch price" in printed
    assert not out.exists() or not list(out.iterdir())


def test_refusals_are_recorded_and_transient_lines_go_to_a_later_batch(tmp_path, monkeypatch):
    texts = records(6) + [{"dataset": "wikipedia", "sample_id": "bad", "text": "a BLOCKED_PROMPT here"}]
    prompts = write_records(tmp_path / "prompts.json", texts)
    out = tmp_path / "out"
    with emulator(monkeypatch, batch=BatchEmulatorConfig(line_error_rate=0.2)) as server:
        summary = _run(_request(prompts, out))
        submitted, billed = dict(server.batches.submitted), dict(server.batches.billed)
        assert len(server.batches.batches) >= 2  # the 500s went into later batches
    assert any(times > 1 for times in submitted.values())
    with Ledger(out) as ledger:
        failures = {failure["key"]: failure for failure in ledger.failures()}
        done = set(ledger.keys("done"))
    refused = {key for key, failure in failures.items() if failure["error_kind"] == "permanent"}
    blocked = {key for key in submitted if "_bad_" in key}
    assert len(blocked) == 10 and refused and refused <= blocked
    assert all("moderation_blocked" in failures[key]["error"] for key in refused)
    # A blocked line can also meet a 500 in three batches in a row before its refusal is ever seen.
    for key in set(failures) - refused:  # a 500 in three batches in a row: recorded, not sent a fourth time
        assert failures[key]["error_kind"] == "transient" and submitted[key] == 3
    assert summary.state == "finished" and len(done) + len(failures) == 70
    assert billed == {key: 1 for key in done}  # every kept image paid once, refusals never
    assert len(by_style_images(out)) == len(done)


def test_an_expired_batch_keeps_its_finished_lines_and_the_rest_is_sent_again(tmp_path, monkeypatch):
    prompts = write_records(tmp_path / "prompts.json", records(3))
    out = tmp_path / "out"
    with emulator(monkeypatch, batch=BatchEmulatorConfig(line_s=0.02, completion_window_s=0.3)) as server:
        summary = _run(_request(prompts, out))
        statuses = [job.status for job in server.batches.batches.values()]
        billed = dict(server.batches.billed)
    assert statuses[0] == "expired" and statuses[-1] == "completed"
    assert summary.state == "finished" and summary.progress.done == 30
    assert set(billed.values()) == {1} and len(billed) == 30
    assert stats(out)["total_attempts"] > 30  # expired lines were submitted again


def _run_in_thread(request: StyleRequest, control: RunControl) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(_run(request, control)))
    thread.start()
    return thread, result


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_stop_leaves_batches_running_and_cancel_batches_keeps_what_they_finished(tmp_path, monkeypatch):
    prompts = write_records(tmp_path / "prompts.json", records(3))
    out = tmp_path / "out"
    with emulator(monkeypatch, batch=BatchEmulatorConfig(line_s=0.1, cancelling_s=0.1)) as server:
        control = RunControl()
        thread, result = _run_in_thread(_request(prompts, out), control)
        _wait_for(lambda: any(job.completed >= 3 for job in server.batches.batches.values()))
        control.stop()
        thread.join(timeout=20)
        (job,) = server.batches.batches.values()
        assert result[0].state == "stopped" and "still running at OpenAI" in result[0].message
        assert job.status == "in_progress"  # left running

        cancelled = _run(_request(prompts, out, cancel_batches=True))
        assert job.status == "cancelled" and 3 <= job.completed < 30
        assert cancelled.progress.done == job.completed and len(by_style_images(out)) == job.completed
        with Ledger(out) as ledger:
            assert ledger.counts()["pending"] == 30 - job.completed

        finished = _run(_request(prompts, out))
        assert finished.state == "finished" and finished.progress.done == 30
        assert set(server.batches.billed.values()) == {1} and len(server.batches.billed) == 30


def test_pause_stops_polling_until_resumed(tmp_path, monkeypatch):
    prompts = write_records(tmp_path / "prompts.json", records(2))
    out = tmp_path / "out"
    with emulator(monkeypatch, batch=BatchEmulatorConfig(line_s=0.02)) as server:
        control = RunControl()
        thread, result = _run_in_thread(_request(prompts, out), control)
        _wait_for(lambda: server.batches.steps["batch_retrieved"] >= 1)
        control.pause()
        time.sleep(0.3)
        polls = server.batches.steps["batch_retrieved"]
        time.sleep(0.8)  # the batch finishes meanwhile, unpolled
        assert server.batches.steps["batch_retrieved"] == polls
        assert not by_style_images(out)
        control.resume()
        thread.join(timeout=20)
    assert result[0].state == "finished" and len(by_style_images(out)) == 20


def test_the_budget_caps_what_is_submitted_at_the_batch_price(tmp_path, monkeypatch):
    prompts = write_records(tmp_path / "prompts.json", records(4))
    out = tmp_path / "out"
    plan = plan_styles(_request(prompts, out))
    per_image = plan.tasks[0].cost * batch_terms().price_multiplier
    budget = per_image * 15.5
    with emulator(monkeypatch) as server:
        summary = _run(_request(prompts, out, budget=budget, batch_size=8))
        submitted = sum(server.batches.submitted.values())
    # A task is sent only while its batch price fits beside what was billed and what the lines in
    # flight may cost: the first 15 at once, then more only as far as the bills leave room.
    assert summary.state == "budget" and 15 <= submitted == summary.progress.done < 40
    assert summary.progress.spent <= budget < summary.progress.spent + per_image
    with Ledger(out) as ledger:
        assert ledger.counts()["pending"] == 40 - submitted


@pytest.mark.parametrize("flags", [["--backend", "flux2", "--flux_ckpt", ".", "--mode", "batch"],
                                   ["--cancel-batches"], ["--mode", "batch", "--batch-size", "0"]])
def test_batch_options_that_cannot_work_stop_before_anything_is_sent(tmp_path, capsys, flags):
    prompts = write_records(tmp_path / "prompts.json", records(1))
    code = main(["--prompts", str(prompts), "--output", str(tmp_path / "out"), *flags, "--dry-run"])
    assert code == 2 and "cannot start" in capsys.readouterr().err


def test_request_files_keep_the_task_key_as_custom_id_and_the_synchronous_body(tmp_path, monkeypatch):
    prompts = write_records(tmp_path / "prompts.json", records(1))
    with emulator(monkeypatch) as server:
        _run(_request(prompts, tmp_path / "out", styles=["sketch"]))
        (upload,) = [f for f in server.batches.files.values() if f.purpose == "batch"]
    (line,) = [json.loads(text) for text in upload.data.decode().splitlines()]
    assert line["custom_id"] == "wikipedia_000_sketch" and line["method"] == "POST"
    assert line["url"] == "/v1/images/generations"
    assert line["body"]["size"] == "1024x1024" and line["body"]["quality"] == "low"
    assert line["body"]["prompt"].endswith("sample text number 0") or "sample text number 0" in line["body"]["prompt"]


@pytest.mark.parametrize("step", ["upload_stored", "batch_created", "batch_retrieved", "content_served"])
def test_a_dropped_answer_is_looked_up_not_sent_again(tmp_path, monkeypatch, step):
    prompts = write_records(tmp_path / "prompts.json", records(2))
    out = tmp_path / "out"
    dropped = []

    def drop_first(name: str) -> None:
        if name == step and not dropped:
            dropped.append(name)
            raise DroppedConnection()

    with emulator(monkeypatch) as server:
        server.batches.tripwire = drop_first
        summary = _run(_request(prompts, out, batch_size=8))
        assert dropped == [step]
        assert summary.state == "finished" and summary.progress.done == 20
        assert len(server.batches.batches) == 3 and len([f for f in server.batches.files.values()
                                                         if f.purpose == "batch"]) == 3
        assert set(server.batches.submitted.values()) == {1} and set(server.batches.billed.values()) == {1}


@pytest.mark.parametrize("step", ["upload_stored", "batch_created", "batch_retrieved", "content_served"])
def test_an_answer_that_never_comes_is_given_up_after_the_request_timeout_and_nothing_is_paid_twice(
        tmp_path, monkeypatch, step):
    prompts = write_records(tmp_path / "prompts.json", records(2))
    out = tmp_path / "out"
    with emulator(monkeypatch) as server:
        server.batches.hang_at(step, seconds=20)
        began = time.monotonic()
        summary = _run(_request(prompts, out, batch_size=8, request_timeout_s=1.0))
        took = time.monotonic() - began
        assert summary.state == "finished" and summary.progress.done == 20
        assert took < 15, f"the run waited {took:.1f} s for an answer that never came"
        assert set(server.batches.submitted.values()) == {1} and set(server.batches.billed.values()) == {1}
        assert len(server.batches.batches) == 3
    assert len(by_style_images(out)) == 20


def test_dall_e_3_lines_ask_for_base64_so_an_expired_url_never_buys_an_image_twice(tmp_path, monkeypatch):
    prompts = write_records(tmp_path / "prompts.json", records(2))
    out = tmp_path / "out"
    request = _request(prompts, out, model="dall-e-3", quality="standard", allow_retired=True,
                       styles=["sketch", "cartoon"])
    with emulator(monkeypatch, url_ttl_s=0.0) as server:  # a URL answer would be gone before collection
        summary = _run(request)
        billed = dict(server.batches.billed)
        uploads = [f for f in server.batches.files.values() if f.purpose == "batch"]
    bodies = [json.loads(text)["body"] for upload in uploads for text in upload.data.decode().splitlines()]
    assert summary.state == "finished" and summary.progress.done == 4
    assert billed == {key: 1 for key in billed} and len(billed) == 4
    with Ledger(out) as ledger:
        booked = ledger.totals()["cost"]
    assert booked == pytest.approx(4 * batch_price(plan_styles(request).tasks[0]))
    assert bodies and {body.get("response_format") for body in bodies} == {"b64_json"}


def test_the_summary_names_the_failure_kinds_with_the_retry_hint(tmp_path, monkeypatch, capsys):
    texts = records(1) + [{"dataset": "wikipedia", "sample_id": "bad", "text": "a BLOCKED_PROMPT here"}]
    prompts = write_records(tmp_path / "prompts.json", texts)
    with emulator(monkeypatch):
        code = main(["--prompts", str(prompts), "--output", str(tmp_path / "out"), *CHEAP, *BATCH,
                     "--style", "sketch"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "permanent: 1 (first: " in err and "rerun with --retry-failed once their cause is fixed" in err


def test_an_image_found_on_disk_is_booked_at_what_it_was_billed(tmp_path, monkeypatch):
    prompts = write_records(tmp_path / "prompts.json", records(2))
    out = tmp_path / "out"
    with emulator(monkeypatch) as server:
        assert main(["--prompts", str(prompts), "--output", str(out), *CHEAP, "--style", "sketch"]) == 0
        with Ledger(out) as ledger:
            billed = ledger.totals()["cost"]
        (out / "ledger.sqlite").unlink()  # the record is lost; the images and their provenance are not
        for stale in out.glob("ledger.sqlite-*"):
            stale.unlink()
        summary = _run(_request(prompts, out, styles=["sketch"]))
        assert not server.batches.batches, "nothing was sent again"
    assert summary.state == "finished" and summary.progress.healed == 2
    with Ledger(out) as ledger:
        assert billed > 0 and ledger.totals()["cost"] == pytest.approx(billed)
