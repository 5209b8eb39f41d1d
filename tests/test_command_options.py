"""Every command takes its options spelled with - or _, refuses numbers that mean nothing, and never
hard-wraps a message when its output is a file or a pipe."""

from __future__ import annotations

import subprocess
import sys

import pytest
from styles_fixtures import SAMPLE_PROMPTS

IMGGEN = [sys.executable, "-m", "imggen.cli"]


def imggen(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*IMGGEN, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("spelling", ["--max-samples", "--max_samples"])
def test_both_spellings_of_an_option_mean_the_same(tmp_path, spelling):
    ran = imggen("styles", "--prompts", SAMPLE_PROMPTS, "--output", tmp_path / "out", spelling, "1",
                 "--flux_steps" if spelling == "--max_samples" else "--flux-steps", "2", "--dry-run")
    assert ran.returncode == 0, ran.stderr
    assert "40 images: 4 samples" in ran.stdout


def test_instructions_and_trainset_take_dashes_too(tmp_path):
    ran = imggen("instructions", "--planning-model", "Nobody", "--predicted-instructions-root", tmp_path,
                 "--flux-ckpt", tmp_path / "missing-checkpoint")
    assert ran.returncode == 2 and "unrecognized arguments" not in ran.stderr
    assert "does not exist" in ran.stderr
    ran = imggen("trainset", "--source", "x.png", "--user_id", "me", "--actor_id", "hero", "--grid", "1")
    assert ran.returncode == 2 and "--grid: must be at least 2, got 1" in ran.stderr


@pytest.mark.parametrize("args, said", [
    (["--rpm", "0"], "--rpm: must be more than 0, got 0"),
    (["--budget", "-1"], "--budget: must be at least 0, got -1"),
    (["--max-samples", "0"], "--max-samples: must be at least 1, got 0"),
])
def test_numbers_that_mean_nothing_are_refused(tmp_path, args, said):
    ran = imggen("styles", "--prompts", SAMPLE_PROMPTS, "--output", tmp_path / "out", *args, "--dry-run")
    assert ran.returncode == 2 and said in ran.stderr
    assert "Traceback" not in ran.stderr


def test_messages_are_not_hard_wrapped_into_a_pipe(tmp_path):
    deep = tmp_path.joinpath(*["a-long-folder-name"] * 8) / "prompts.json"
    ran = imggen("styles", "--prompts", deep, "--output", tmp_path / "out", "--backend", "flux2",
                 "--flux_ckpt", tmp_path, "--dry-run")
    assert ran.returncode == 2
    lines = [line for line in ran.stderr.splitlines() if "cannot start" in line]
    assert len(lines) == 1 and str(deep) in lines[0], ran.stderr


@pytest.mark.slow
def test_model_loading_is_quiet_unless_verbose(tmp_path, klein):
    args = ["styles", "--prompts", SAMPLE_PROMPTS, "--output", tmp_path / "out", "--backend", "flux2", "--flux_ckpt",
            klein, "--size", "64x64", "--flux-steps", "1", "--max-samples", "1", "--style", "cartoon"]
    quiet = imggen(*args)
    args[args.index("--output") + 1] = tmp_path / "verbose"  # a folder of its own: a finished one loads no model
    verbose = imggen(*args, "--verbose")
    assert quiet.returncode == verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert "Loading pipeline components" in verbose.stderr
    assert "Loading pipeline components" not in quiet.stderr and "it/s]" not in quiet.stderr


def test_building_a_tiny_checkpoint_draws_no_progress_bar(tmp_path):
    built = imggen("tiny-checkpoint", tmp_path / "klein")
    assert built.returncode == 0, built.stderr
    assert built.stdout.strip() == str(tmp_path / "klein") and "it/s]" not in built.stderr, built.stderr


def test_every_command_takes_its_defaults_from_its_options_class():
    from pathlib import Path

    from imggen.console import parse_args
    from imggen.pipelines.instructions import cli as instructions
    from imggen.pipelines.instructions.run import InstructionsOptions
    from imggen.pipelines.styles import cli as styles
    from imggen.pipelines.styles.plan import StyleRequest
    from imggen.pipelines.trainset import cli as trainset
    from imggen.pipelines.trainset.parts import TrainsetChoices
    from imggen.pipelines.trainset.plan import TrainsetOptions

    def parsed(command, *argv):
        return parse_args(command.build_parser(), list(argv))

    assert instructions.options_from_args(parsed(instructions, "--planning_model", "P")) == InstructionsOptions("P")
    assert styles.request_from(parsed(styles, "--prompts", "p.csv", "--output", "out")) == StyleRequest(
        Path("p.csv"), Path("out"))
    options, choices = trainset.plan(parsed(trainset, "--source", "s.png", "--user-id", "u", "--actor-id", "a"))
    assert (options, choices) == (TrainsetOptions(), TrainsetChoices())
