"""The ``imggen`` command as a user runs it: help, the demo, Ctrl-C once (graceful) and twice (at once),
and one start-up error for every command."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imggen.engine.ledger import Ledger

IMGGEN = [sys.executable, "-m", "imggen.cli"]


def test_help_lists_the_commands():
    result = subprocess.run([*IMGGEN, "--help"], capture_output=True, text=True, check=True)
    assert "demo" in result.stdout


def test_demo_runs_and_a_rerun_does_nothing_twice(tmp_path):
    out = tmp_path / "demo"
    args = [*IMGGEN, "demo", "engine", "--output", str(out), "--count", "12", "--latency", "0.01"]
    first = subprocess.run(args, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "finished: 12/12 done" in first.stderr
    assert len(list((out / "images").glob("*.png"))) == 12
    stats = json.loads((out / "processing_stats.json").read_text())
    assert stats["successful_downloads"] == 12 and stats["total_attempts"] == 12 + 2  # two simulated timeouts
    second = subprocess.run(args, capture_output=True, text=True)
    assert second.returncode == 0 and "finished: 12/12 done" in second.stderr
    assert json.loads((out / "processing_stats.json").read_text())["total_attempts"] == 14


def image_count(out: Path) -> int:
    return len(list((out / "images").glob("*.png")))


def wait_for_log(out: Path, text: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while not ((out / "run.log").exists() and text in (out / "run.log").read_text()):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)


def wait_for_images(out: Path, count: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while image_count(out) < count:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("interrupts, latency", [(1, "0.5"), (2, "60")])
def test_ctrl_c_stops_with_a_consistent_ledger_and_a_rerun_finishes(tmp_path, interrupts, latency):
    out = tmp_path / "demo"
    args = [*IMGGEN, "demo", "engine", "--output", str(out), "--count", "60", "--concurrency", "4"]
    process = subprocess.Popen([*args, "--latency", latency], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if interrupts == 1:
        wait_for_images(out, 3, process)
    else:  # calls of a minute each are in flight: only an immediate stop ends the run soon
        wait_for_log(out, "run started", process)
    for _ in range(interrupts):
        process.send_signal(signal.SIGINT)
        time.sleep(0.1)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 2, stderr
    assert "rerun the same command to continue" in stderr
    with Ledger(out) as ledger:
        counts = ledger.counts()
    assert counts["running"] == 0 and counts["pending"] > 0
    assert counts["done"] == image_count(out)

    rerun = subprocess.run([*args, "--latency", "0.01"], capture_output=True, text=True)
    assert rerun.returncode == 0 and "finished: 60/60 done" in rerun.stderr


def test_tiny_checkpoint_command_builds_a_loadable_folder(tmp_path):
    result = subprocess.run([*IMGGEN, "tiny-checkpoint", str(tmp_path / "ckpt")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "ckpt" / "model_index.json").read_text())
    assert index["_class_name"] == "Flux2KleinPipeline" and index["is_distilled"] is True


def test_emulate_help_lists_the_emulators_and_a_wrong_name_fails():
    from imggen.emulators.cli import main

    shown = subprocess.run([*IMGGEN, "emulate", "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and [line.split()[0] for line in shown.stdout.splitlines()[1:3]] == ["openai", "replicate"]
    assert main(["anthropic"]) == 2


def test_emulate_serves_the_openai_api_until_stopped(tmp_path):
    import socket

    from openai import OpenAI

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([*IMGGEN, "emulate", "openai", "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        client = OpenAI(api_key="sk-local", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
        deadline = time.monotonic() + 20
        while True:
            try:
                result = client.images.generate(model="gpt-image-2", prompt="a red fox", size="1024x1024")
                break
            except Exception:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.2)
        assert result.data[0].b64_json
    finally:
        server.terminate()
        server.wait(timeout=10)


def _busy_folder_commands(tmp_path: Path, monkeypatch) -> dict[str, tuple]:
    """Each command with arguments that would run, and the folder that run would lock."""
    from conftest import png_bytes

    monkeypatch.setenv("OPENAI_API_KEY", "sk-cli-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing is sent: the folder is busy first
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_cli_test")
    monkeypatch.setenv("REPLICATE_BASE_URL", "http://127.0.0.1:9")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"dataset": "d", "sample_id": "1", "text": "a fox"}) + "\n")
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "model_index.json").write_text("{}")
    (tmp_path / "predicted_instructions" / "P").mkdir(parents=True)
    (tmp_path / "predicted_instructions" / "P" / "results.jsonl").write_text("")
    source = tmp_path / "source.png"
    source.write_bytes(png_bytes())
    return {
        "imggen.pipelines.styles.cli": (
            ["--prompts", prompts, "--output", tmp_path / "styles", "--size", "1024x1024", "--quality", "low"],
            tmp_path / "styles"),
        "imggen.pipelines.instructions.cli": (
            ["--planning_model", "P", "--predicted_instructions_root", tmp_path / "predicted_instructions",
             "--output_root", tmp_path / "instructions", "--flux_ckpt", checkpoint, "--device", "cpu"],
            tmp_path / "instructions"),
        "imggen.pipelines.trainset.cli": (
            ["--source", source, "--user-id", "u", "--actor-id", "a", "--output", tmp_path / "trainset",
             "--storage", "local", "--judge", "hash", "--upscaler", "lanczos"],
            tmp_path / "trainset" / "u" / "a"),
    }


@pytest.mark.parametrize("module", ["imggen.pipelines.styles.cli", "imggen.pipelines.instructions.cli",
                                    "imggen.pipelines.trainset.cli"])
def test_a_busy_folder_is_one_line_and_exit_2_in_every_command(tmp_path, monkeypatch, capsys, module):
    import importlib

    from imggen.storage.lock import folder_lock

    args, folder = _busy_folder_commands(tmp_path, monkeypatch)[module]
    command = "imggen " + module.split(".")[2]
    with folder_lock(folder):  # another run holds it
        code = importlib.import_module(module).main([str(arg) for arg in args])
    err = capsys.readouterr().err
    assert code == 2, err
    (message,) = [text for text in err.splitlines() if "cannot start" in text]
    assert message.startswith(f"{command}: cannot start: ") and "is in use by a running job" in message
    assert "Traceback" not in err


@pytest.mark.parametrize("module, args, why", [
    ("imggen.pipelines.styles.cli", ["--prompts", "missing.csv", "--output", "out"], "missing.csv: no such file"),
    ("imggen.pipelines.instructions.cli", ["--planning_model", "P", "--flux_ckpt", "nowhere"],
     "the checkpoint nowhere does not exist"),
    ("imggen.pipelines.trainset.cli", ["--source", "missing.png", "--user-id", "u", "--actor-id", "a",
                                       "--storage", "local", "--judge", "hash", "--upscaler", "lanczos"],
     "no Replicate token: set REPLICATE_API_TOKEN in the environment or in .env, or run every part on this machine"),
    ("imggen.pipelines.trainset.cli", ["--source", "missing.png", "--user-id", "u", "--actor-id", "a", "--local",
                                       "--flux_ckpt", "ckpt", "--judge", "gpt"],
     "the checkpoint ckpt does not exist"),
    ("imggen.pipelines.trainset.cli", ["--source", "missing.png", "--user-id", "u", "--actor-id", "a",
                                       "--upscaler", "lanczos", "--judge", "gpt"],
     "the gpt judge needs an OpenAI API key"),
    ("imggen.pipelines.trainset.cli", ["--source", "missing.png", "--user-id", "u", "--actor-id", "a",
                                       "--upscaler", "lanczos", "--judge", "hash", "--caption", "gpt"],
     "gpt captions need an OpenAI API key: set OPENAI_API_KEY (or use --caption description)"),
])
def test_bad_input_or_a_missing_key_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, module, args, why):
    import importlib

    monkeypatch.chdir(tmp_path)  # no .env
    if "gpt" in args:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-cli-test")
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    if "--judge" in args and "gpt" in args and "--local" not in args:
        monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_cli_test_token")  # the grids' key is there, the judge's is not
    code = importlib.import_module(module).main(args)
    err = capsys.readouterr().err
    (message,) = err.strip().splitlines()
    assert code == 2 and message.startswith(f"imggen {module.split('.')[2]}: cannot start: {why}"), err


@pytest.mark.parametrize("args", [["--help"], ["engine", "--help"]])
def test_demo_help_loads_neither_papermill_nor_jupyter(args):
    code = ("import contextlib, io, sys\nfrom imggen.demo.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit): main({args!r})\n"
            "print(sorted(name for name in ('papermill', 'nbformat', 'jupyterlab') if name in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
