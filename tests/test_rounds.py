"""Rerunning on a folder (or an actor) with other settings: refused with what differs, or a new round.

Every command records the settings that define its outputs (model, size, quality, prompt templates,
steps, storage, ...) and compares a rerun's with them before anything is paid. Pacing (concurrency,
rpm, budget) may change freely. ``--new-round`` makes the outputs again with the new settings.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO
from imggen.engine.ledger import Ledger
from imggen.pipelines.instructions.cli import main as instructions_main
from imggen.pipelines.styles.cli import main as styles_main
from imggen.pipelines.trainset import job_root
from imggen.pipelines.trainset.cli import main as trainset_main
from instructions_fixtures import PLANNER, SIZE, STEPS, call_log, calls, folder, sample_inputs  # noqa: F401
from styles_fixtures import SAMPLE_PROMPTS, emulator, generations, png_text
from trainset_fixtures import BUCKET, services, source_file  # noqa: F401 - fixtures

HINT = "rerun with the same settings to continue, or pass --new-round to start a new round"


def refusal(err: str, command: str) -> str:
    """The one start-up line of a refused run."""
    (line,) = [text for text in err.splitlines() if "cannot start" in text]
    assert line.startswith(f"imggen {command}: cannot start: ") and HINT in line and "Traceback" not in err, err
    return line


def test_styles_other_settings_are_refused_pacing_is_not_and_a_new_round_draws_again(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    base = ["--prompts", SAMPLE_PROMPTS, "--output", out, "--datasets", "wikipedia", "--max-samples", "2",
            "--style", "cartoon", "--size", "1024x1024"]

    def styles(*extra) -> tuple[int, str]:
        code = styles_main([str(a) for a in [*base, *extra]])
        return code, capsys.readouterr().err

    with emulator(monkeypatch) as server:
        assert styles("--quality", "low")[0] == 0
        assert len(generations(server)) == 2
        image = out / "images/by_style/cartoon/wikipedia_001_cartoon.png"
        first = image.read_bytes()

        code, err = styles("--quality", "medium", "--size", "1536x1024")
        line = refusal(err, "styles")
        assert code == 2 and "quality low → medium" in line and "size 1024x1024 → 1536x1024" in line
        assert len(generations(server)) == 2 and image.read_bytes() == first  # nothing sent, nothing touched

        code, err = styles("--quality", "low", "--concurrency", "2", "--rpm", "600", "--budget", "5")
        assert code == 0 and "finished: 2/2 done" in err and len(generations(server)) == 2  # pacing: a resume

        code, err = styles("--quality", "medium", "--new-round")
        assert code == 0, err
        assert len(generations(server)) == 4  # both images drawn again
        assert json.loads(png_text(image)["imggen"])["parameters"]["quality"] == "medium"
        metadata = (out / "images" / "metadata.jsonl").read_text().splitlines()
        assert len(metadata) == 2  # one line per image, of its latest round
        with Ledger(out) as ledger:
            assert set(ledger.keys("done")) == {"wikipedia_001_cartoon", "wikipedia_002_cartoon",
                                                "wikipedia_001_cartoon#round1", "wikipedia_002_cartoon#round1"}

        assert styles("--quality", "medium")[0] == 0 and len(generations(server)) == 4  # the new round resumes
        assert refusal(styles("--quality", "low")[1], "styles")  # and the old settings are now the other ones


def test_styles_a_changed_prompt_template_is_refused(tmp_path, monkeypatch, capsys):
    out, styles_file = tmp_path / "out", tmp_path / "styles.json"
    args = ["--prompts", SAMPLE_PROMPTS, "--output", out, "--datasets", "wikipedia", "--max-samples", "1",
            "--styles", styles_file, "--size", "1024x1024", "--quality", "low"]
    with emulator(monkeypatch) as server:
        styles_file.write_text(json.dumps({"styles": {"ink": "an ink drawing of {text}"}}))
        assert styles_main([str(a) for a in args]) == 0
        styles_file.write_text(json.dumps({"styles": {"ink": "a watercolour of {text}"}}))
        assert styles_main([str(a) for a in args]) == 2
        line = refusal(capsys.readouterr().err, "styles")
        assert "style 'ink' an ink drawing of {text} → a watercolour of {text}" in line
        assert len(generations(server)) == 1
        assert styles_main([str(a) for a in [*args, "--new_round"]]) == 0 and len(generations(server)) == 2


def test_instructions_other_steps_are_refused_and_a_new_round_makes_the_images_again(tmp_path, klein, call_log,
                                                                                   capsys):
    sample_inputs(tmp_path)
    base = ["--planning_model", PLANNER, "--flux_ckpt", klein, "--predicted_instructions_root",
            tmp_path / "predicted_instructions", "--output_root", tmp_path / "generated_images",
            "--image_root", tmp_path, "--height", SIZE, "--width", SIZE, "--device", "cpu", "--num_gpus", 1]

    def instructions(*extra) -> tuple[int, str]:
        code = instructions_main([str(a) for a in [*base, *extra]])
        return code, capsys.readouterr().err

    assert instructions("--num_inference_steps", STEPS)[0] == 0
    assert sum(calls(call_log).values()) == 3
    image = folder(tmp_path) / "0" / "img_0.png"
    stamp = image.stat().st_mtime_ns

    code, err = instructions("--num_inference_steps", STEPS + 1)
    line = refusal(err, "instructions")
    assert code == 2 and f"num_inference_steps {STEPS} → {STEPS + 1}" in line
    assert str(folder(tmp_path)) in line
    assert sum(calls(call_log).values()) == 3 and image.stat().st_mtime_ns == stamp

    assert instructions("--num_inference_steps", STEPS, "--batch_size", 2)[0] == 0  # not a setting of the images
    assert sum(calls(call_log).values()) == 3

    code, err = instructions("--num_inference_steps", STEPS + 1, "--new-round")
    assert code == 0, err
    assert sum(calls(call_log).values()) == 6 and image.stat().st_mtime_ns > stamp
    with Image.open(image) as made:
        assert json.loads(made.text["imggen"])["key"].endswith("#round1")
    assert instructions("--num_inference_steps", STEPS + 1)[0] == 0 and sum(calls(call_log).values()) == 6


def trainset_args(source, output, *extra) -> list[str]:
    return [str(a) for a in ["--source", source, "--user-id", "me", "--actor-id", "hero", "--target", 3,
                             "--output", output, "--judge", "hash", "--upscaler", "lanczos", *extra]]


def test_trainset_the_same_actor_stored_elsewhere_is_refused_and_a_new_round_makes_new_images(
        services, source_file, tmp_path, capsys):
    output = tmp_path / "runs"
    assert trainset_main(trainset_args(source_file, output, "--storage", "s3")) == 0
    s3_urls = capsys.readouterr().out.split()
    assert len(s3_urls) == 3 and all(f"/{BUCKET}/" in url for url in s3_urls)
    grids = services.replicate.counts.created[FLUX_KONTEXT_PRO]

    assert trainset_main(trainset_args(source_file, output, "--storage", "local")) == 2
    captured = capsys.readouterr()
    line = refusal(captured.err, "trainset")
    assert f"storage s3://{BUCKET}/me/hero/ → file://" in line and captured.out == ""  # no earlier URL is given
    assert services.replicate.counts.created[FLUX_KONTEXT_PRO] == grids

    assert trainset_main(trainset_args(source_file, output, "--storage", "local", "--new-round")) == 0
    local_urls = capsys.readouterr().out.split()
    actor = job_root(output, "me", "hero")
    assert local_urls == [(actor / f"training-image{i}.jpg").resolve().as_uri() for i in (1, 2, 3)]
    assert all((actor / f"training-image{i}.jpg").is_file() for i in (1, 2, 3))
    assert services.replicate.counts.created[FLUX_KONTEXT_PRO] > grids  # new grids: nothing of the S3 round reused
    assert (actor / "round1" / "ledger.sqlite").is_file()
    first, again = (sorted((folder / "grids").glob("grid1.*")) for folder in (actor, actor / "round1"))
    assert first and again and first[0].read_bytes() != again[0].read_bytes()  # new pictures, not the same again

    assert trainset_main(trainset_args(source_file, output, "--storage", "local")) == 0  # the new round resumes
    assert capsys.readouterr().out.split() == local_urls
    assert trainset_main(trainset_args(source_file, output, "--storage", "s3")) == 2  # the old storage is other now


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_trainset_the_readmes_s3_then_local_commands_on_one_actor(services, source_file, tmp_path, capsys, klein):
    output = tmp_path / "trainset-output"
    remote = [str(a) for a in ["--source", source_file, "--user-id", "me", "--actor-id", "hero", "--target", 3,
                               "--grid", 3, "--storage", "s3", "--output", output]]
    local = [str(a) for a in ["--source", source_file, "--user-id", "me", "--actor-id", "hero", "--target", 3,
                              "--local", "--flux_ckpt", klein, "--flux-size", 96, "--flux-steps", 2,
                              "--output", output]]
    assert trainset_main(remote) == 0
    s3_urls = capsys.readouterr().out.split()
    assert len(s3_urls) == 3

    assert trainset_main(local) == 2
    line = refusal(capsys.readouterr().err, "trainset")
    assert "grids flux-kontext-pro → flux2-klein" in line and "upscaler topaz → lanczos" in line

    assert trainset_main([*local, "--new_round"]) == 0
    urls = capsys.readouterr().out.split()
    assert len(urls) == 3 and all(url.startswith("file://") for url in urls) and not set(urls) & set(s3_urls)
    for url in urls:
        with Image.open(url.removeprefix("file://")) as image:
            assert image.size == (64, 64)  # a 32-pixel tile of a 96-pixel local grid, doubled


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_style_notebook_refuses_other_settings_and_takes_new_round(tmp_path, monkeypatch):
    import papermill

    from styles_fixtures import REPO

    out = tmp_path / "out"

    def notebook(**parameters) -> None:
        papermill.execute_notebook(
            str(REPO / "notebooks" / "01_style_matrix.ipynb"), str(tmp_path / "ran.ipynb"), cwd=str(tmp_path),
            kernel_name="python3", progress_bar=False,
            parameters={"prompts": str(SAMPLE_PROMPTS), "output": str(out), "max_samples": 1, "styles": "cartoon",
                        "datasets": "wikipedia", "size": "1024x1024", "sheet": False, **parameters},
        )

    with emulator(monkeypatch) as server:
        notebook(quality="low")
        assert len(generations(server)) == 1
        with pytest.raises(papermill.PapermillExecutionError) as refused:
            notebook(quality="medium")
        assert "quality low → medium" in str(refused.value) and HINT in str(refused.value)
        assert len(generations(server)) == 1
        notebook(quality="medium", new_round=True)
        assert len(generations(server)) == 2
        (image,) = (out / "images" / "by_style" / "cartoon").glob("*.png")
        assert json.loads(png_text(image)["imggen"])["parameters"]["quality"] == "medium"
