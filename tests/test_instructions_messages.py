"""What ``imggen instructions`` says before and while it starts, through the real command on the tiny
checkpoint: a planning model that is not there, an image root under which the source images are
missing, a Ray cluster that does not answer or asks for a token, the plan it is about to run, and
the workers loading their model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imggen.pipelines.instructions.cli import main

from browser_helpers import free_port
from instructions_fixtures import PLANNER, SIZE, STEPS, folder, sample_inputs


def command(root: Path, klein: Path, *extra: str) -> list[str]:
    return ["--predicted_instructions_root", str(root / "predicted_instructions"), "--image_root", str(root),
            "--output_root", str(root / "generated_images"), "--flux_ckpt", str(klein), "--device", "cpu",
            "--height", str(SIZE), "--width", str(SIZE), "--num_inference_steps", str(STEPS), *extra]


def test_a_planning_model_that_is_not_there_is_one_start_up_line(tmp_path, klein, capsys):
    sample_inputs(tmp_path)
    code = main(command(tmp_path, klein, "--planning_model", "Planer-7B"))  # a typo
    err = capsys.readouterr().err
    (message,) = err.strip().splitlines()
    assert code == 2, err
    assert message.startswith("imggen instructions: cannot start: no planning model 'Planer-7B': ")
    assert str(tmp_path / "predicted_instructions" / "Planer-7B" / "results.jsonl") in message
    assert f"planning models in {tmp_path / 'predicted_instructions'}: {PLANNER}" in message
    assert not (tmp_path / "generated_images").exists()


def test_an_image_root_without_the_source_images_refuses_to_start(tmp_path, klein, capsys):
    sample_inputs(tmp_path)
    wrong = tmp_path / "elsewhere"
    wrong.mkdir()
    args = command(tmp_path, klein, "--planning_model", PLANNER)
    args[args.index("--image_root") + 1] = str(wrong)
    code = main(args)
    err = capsys.readouterr().err
    (message,) = err.strip().splitlines()
    assert code == 2, err
    assert message.startswith("imggen instructions: cannot start: 3 of 3 records name source images missing "
                              f"under --image_root {wrong}")
    assert f"(e.g. {wrong / 'dataset/eval/spatial/images/a.png'})" in message and "set --image_root" in message
    assert not (tmp_path / "generated_images").exists(), "nothing is written, no model is loaded"


def test_a_few_missing_images_are_a_warning_before_the_run_and_the_rest_is_drawn(tmp_path, klein, capsys):
    sample_inputs(tmp_path, questions=4)
    results = tmp_path / "predicted_instructions" / PLANNER / "results.jsonl"
    with open(results, "a") as lines:
        lines.write(json.dumps({"id": 9, "dataset": "spatial", "image_paths": ["dataset/eval/gone.png"],
                                "instructions": ["draw it"]}) + "\n")
    code = main(command(tmp_path, klein, "--planning_model", PLANNER))
    err = capsys.readouterr().err
    warning = f"warning: 1 of 5 records name source images missing under --image_root {tmp_path}"
    assert warning in err and err.index(warning) < err.index("finished:"), err
    assert code == 1  # a record was skipped
    assert len(list(folder(tmp_path).rglob("*.png"))) == 2 + 1 + 0 + 1


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_plan_and_the_workers_loading_are_shown_before_the_first_image(tmp_path, klein, capsys):
    sample_inputs(tmp_path, questions=4)  # 2 + 1 + 0 + 1 images
    args = command(tmp_path, klein, "--planning_model", PLANNER, "--num_gpus", "2")
    assert main(args) == 0
    err = capsys.readouterr().err
    plan = [f"4 records (0 bad) from planning model(s) {PLANNER} in 1 folder(s) under {tmp_path / 'generated_images'}",
            "images: 4 planned, 0 done earlier, 4 to make",
            f"2 worker(s) on cpu, cpu; checkpoint {klein}, {STEPS} steps, batch size 1"]
    # Images start with the first worker ready; the second may still load when the last is done.
    said = ["loading the model on 2 worker processes…",
            "1 of 2 worker processes ready in ", " s; generating while the others load"]
    positions = [err.index(text) for text in [*plan, *said, "finished: 4/4 done"]]
    assert positions == sorted(positions), err
    log = (tmp_path / "generated_images" / "run.log").read_text()
    assert all(text in log for text in said) and f"plan: {plan[1]}" in log

    # A rerun with nothing left to do says so and loads no model.
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "images: 4 planned, 4 done earlier, 0 to make" in err
    assert "loading the model" not in err and "finished: 4/4 done" in err

    # Images a killed run wrote but never recorded count as done too: the run heals them, makes none.
    for record in (tmp_path / "generated_images").glob("ledger.sqlite*"):
        record.unlink()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "images: 4 planned, 4 done earlier, 0 to make" in err and "finished: 4/4 done" in err



def test_a_ray_address_where_no_cluster_answers_is_one_start_up_line(tmp_path, klein, capsys, monkeypatch):
    pytest.importorskip("ray")
    sample_inputs(tmp_path)
    address = f"127.0.0.1:{free_port()}"  # nothing listens there: Ray itself would wait on it for many minutes
    monkeypatch.setenv("RAY_ADDRESS", address)
    code = main(command(tmp_path, klein, "--planning_model", PLANNER, "--engine", "ray"))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.strip().splitlines()[-1].startswith(
        f"imggen instructions: cannot start: no Ray cluster answers at RAY_ADDRESS={address} (")
    assert "start its head with `ray start --head`, or unset RAY_ADDRESS" in err
    assert not list((tmp_path / "generated_images").rglob("*.png"))


@pytest.mark.timeout(180)
def test_a_job_without_the_clusters_token_stops_at_start_with_the_hint(tmp_path, klein):
    pytest.importorskip("ray")
    from ray_head import ray_head

    sample_inputs(tmp_path)
    command_line = [str(Path(sys.executable).with_name("imggen")), "instructions", "--planning_model", PLANNER,
                    "--engine", "ray", *command(tmp_path, klein)]
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAY_")}
    with ray_head(tmp_path / "head.log", cpus=1) as address:  # it asks for a token, which the job lacks
        joined = subprocess.run(command_line, env={**env, "RAY_ADDRESS": address}, capture_output=True, text=True,
                                timeout=150)
    assert joined.returncode == 2, joined.stderr
    last = joined.stderr.strip().splitlines()[-1]
    assert last.startswith(f"imggen instructions: cannot start: cannot join the Ray cluster at RAY_ADDRESS={address}")
    assert last.endswith("set RAY_AUTH_MODE=token here, with the head's token "
                         "(RAY_AUTH_TOKEN, or its ~/.ray/auth_token)")
    assert not list((tmp_path / "generated_images").rglob("*.png"))
