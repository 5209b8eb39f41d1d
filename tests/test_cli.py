"""The ``imggen`` command as a user runs it: help, the demo, Ctrl-C once (graceful) and twice (at once)."""

from __future__ import annotations

import json
import os
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
    args = [*IMGGEN, "demo", "--output", str(out), "--count", "12", "--latency", "0.01"]
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


def wait_for_images(out: Path, count: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while image_count(out) < count:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("interrupts", [1, 2])
def test_ctrl_c_stops_with_a_consistent_ledger_and_a_rerun_finishes(tmp_path, interrupts):
    out = tmp_path / "demo"
    args = [*IMGGEN, "demo", "--output", str(out), "--count", "60", "--latency", "0.5", "--concurrency", "4"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_images(out, 3, process)
    began = time.monotonic()
    for _ in range(interrupts):
        process.send_signal(signal.SIGINT)
        time.sleep(0.05)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2, stderr
    assert "rerun the same command to continue" in stderr
    if interrupts == 2:
        assert time.monotonic() - began < 0.6  # in-flight calls were cancelled, not awaited
    with Ledger(out) as ledger:
        counts = ledger.counts()
    assert counts["running"] == 0 and counts["pending"] > 0
    assert counts["done"] == image_count(out)

    rerun = subprocess.run([*args[:-4], "--latency", "0.01"], capture_output=True, text=True, env=os.environ)
    assert rerun.returncode == 0 and "finished: 60/60 done" in rerun.stderr
