"""``imggen trainset`` killed with SIGKILL while grids or upscales are being paid for, then rerun: nothing is paid twice.

The emulators run in this process, so their counters see every prediction the killed command
created. The create call answers at once, so each prediction is in the run's ledger while still
running. In the first test the command is frozen (SIGSTOP) before the kill, and killed only once
every prediction the server created is either recorded in the ledger or already saved; in the
second it is killed the moment its first prediction is recorded, wherever it was.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO, TOPAZ_IMAGE_UPSCALE
from imggen.pipelines.trainset import job_root
from trainset_fixtures import BUCKET, running_services, source_file, wait_until_creates_are_answered  # noqa: F401

USER, ACTOR = "u1", "a1"


def start(services, source: Path, output: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "imggen.pipelines.trainset.cli", "--source", str(source), "--user-id", USER,
               "--actor-id", ACTOR, "--output", str(output), "--judge", "gpt", "--storage", "s3"]
    env = {**os.environ, **services.environment()}
    return subprocess.Popen(command, env=env, cwd=output.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


PREDICTED = {"grid": FLUX_KONTEXT_PRO, "upscale": TOPAZ_IMAGE_UPSCALE}


def journal(root: Path, kind: str, state: str = "open") -> int:
    """Replicate predictions for ``kind`` tasks recorded in the run's ledger with ``state`` (the judge's
    answers, booked under the grids' keys too, are not predictions)."""
    if not (root / "ledger.sqlite").exists():
        return 0
    with contextlib.closing(sqlite3.connect(root / "ledger.sqlite")) as db:
        try:
            (count,) = db.execute("SELECT COUNT(*) FROM paid_calls WHERE task_key LIKE ? AND state = ? AND model = ?",
                                  (f"{kind}-%", state, PREDICTED[kind])).fetchone()
        except sqlite3.OperationalError:  # no prediction recorded yet
            return 0
    return count


def kill_when(process: subprocess.Popen, ready, server, timeout_s: float = 60.0) -> None:
    """SIGKILL ``process`` at a moment when ``ready()`` holds with the process frozen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if ready():
            process.send_signal(signal.SIGSTOP)
            wait_until_creates_are_answered(server)  # the creates already sent, however busy the machine
            if ready():
                process.send_signal(signal.SIGKILL)
                process.wait()
                return
            process.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("the kill point never came")


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["grids created", "upscales created"])
def test_sigkill_then_rerun_pays_for_no_grid_or_upscale_twice(moment, source_file, tmp_path):
    output = tmp_path / "runs"
    output.mkdir()
    root = job_root(output, USER, ACTOR)
    with running_services(grid_latency_s=2.6, upscale_latency_s=2.6) as services:
        created = services.replicate.counts.created

        def grids_in_flight() -> bool:
            return created[FLUX_KONTEXT_PRO] >= 1 and journal(root, "grid") == created[FLUX_KONTEXT_PRO]

        def upscales_in_flight() -> bool:
            saved = len(list((root / "upscales").glob("*.jpg")))
            return 3 <= created[TOPAZ_IMAGE_UPSCALE] == journal(root, "upscale") + saved and saved < 20

        process = start(services, source_file, output)
        kill_when(process, grids_in_flight if moment == "grids created" else upscales_in_flight, services.replicate)
        paid_before_kill = dict(created)

        rerun = start(services, source_file, output)
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        keys = services.s3().list_objects_v2(Bucket=BUCKET)["Contents"]

    images = [key for key in keys if key["Key"].endswith(".jpg")]
    assert len(out.split()) == 20 and len(images) == 20 and len(keys) == 41  # each with its caption, and metadata
    assert created[FLUX_KONTEXT_PRO] == 3  # the grids created before the kill were collected, not redrawn
    assert created[TOPAZ_IMAGE_UPSCALE] == 20
    assert paid_before_kill[FLUX_KONTEXT_PRO] >= 1
    assert journal(root, "grid") == journal(root, "upscale") == 0  # every recorded prediction was collected
    assert (journal(root, "grid", "used"), journal(root, "upscale", "used")) == (3, 20)


@pytest.mark.slow
def test_a_kill_just_after_the_first_creates_pays_for_nothing_again(source_file, tmp_path):
    """With the create call's default wait, the server answers a create at once: the prediction's id is
    recorded while it still runs, and a kill a moment later finds it there (a hold for a finished
    result would still be waiting). Only a create whose answer had not been recorded at the kill
    (in flight, as a busy machine can leave the others) may be paid for again."""
    output = tmp_path / "runs"
    output.mkdir()
    root = job_root(output, USER, ACTOR)
    with running_services(grid_latency_s=2.6, upscale_latency_s=0.3) as services:
        created = services.replicate.counts.created
        process = start(services, source_file, output)
        deadline = time.monotonic() + 60
        while not journal(root, "grid"):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no prediction was recorded"
            time.sleep(0.01)
        first = next(iter(services.replicate.predictions.values()))
        recorded_while_running = not first.done.is_set()
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert recorded_while_running, "the first id was recorded only once its prediction had ended"
        in_flight = created[FLUX_KONTEXT_PRO] - journal(root, "grid") - journal(root, "grid", "used")
        rerun = start(services, source_file, output)
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        creates = [record for record in services.replicate.requests
                   if record.method == "POST" and not record.path.endswith("/cancel")]
    assert len(out.split()) == 20
    assert created == {FLUX_KONTEXT_PRO: 3 + in_flight, TOPAZ_IMAGE_UPSCALE: 20}, f"{in_flight} in flight at the kill"
    assert {(record.prefer, record.status) for record in creates} == {(None, 202)}  # answered at once
