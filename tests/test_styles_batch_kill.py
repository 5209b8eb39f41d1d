"""``imggen styles --mode batch`` killed with SIGKILL at every step of the Batch API protocol, then rerun:
no task is ever submitted twice (counted by the emulator), no image is paid twice, every image is kept."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest
from styles_fixtures import CHEAP, by_style_images, emulator, emulator_env, records, write_records

from imggen.emulators.openai_batch_store import STEPS, BatchEmulatorConfig
from imggen.emulators.openai_replies import DroppedConnection
from imggen.engine.batch_book import BatchBook
from imggen.engine.ledger import Ledger
from imggen.pipelines.styles.batch_send import FOLDER_KEY, input_file_name
from imggen.storage.atomic import is_valid_image

SAMPLES, STYLES, BATCH_SIZE = 3, 10, 8
TASKS = SAMPLES * STYLES
BATCHES = math.ceil(TASKS / BATCH_SIZE)
# Each step the emulator counts, killed at its second occurrence so that one batch is already through;
# then the lookups a rerun makes to heal a kill between OpenAI's answer and the ledger write, killed too.
TRIALS = {
    "upload_received": [("upload_received", 2)],
    "upload_stored": [("upload_stored", 2)],
    "create_received": [("create_received", 2)],
    "batch_created": [("batch_created", 2)],
    "batch_retrieved": [("batch_retrieved", 2)],
    "content_served": [("content_served", 2)],
    "images_written": [("images_written", 1)],  # from the outside, while a finished batch's images are written
    "batch_created+batches_listed": [("batch_created", 1), ("batches_listed", 1)],
    "upload_stored+files_listed": [("upload_stored", 1), ("files_listed", 1)],
}


class KillAt:
    """The emulator's tripwire: SIGKILL the client when ``step`` happens for the ``nth`` time, answer nothing."""

    def __init__(self, step: str, nth: int = 2) -> None:
        self.step, self.nth, self.seen = step, nth, 0
        self.process: subprocess.Popen | None = None
        self.killed = False

    def __call__(self, name: str) -> None:
        if name != self.step or self.process is None or self.killed:
            return
        self.seen += 1
        if self.seen == self.nth:
            self.process.kill()
            self.process.wait()
            self.killed = True
            raise DroppedConnection()


def _command(prompts, out) -> list[str]:
    return [sys.executable, "-m", "imggen.pipelines.styles.cli", "--prompts", str(prompts), "--output", str(out),
            "--mode", "batch", "--batch-size", str(BATCH_SIZE), "--poll-seconds", "0.05", *CHEAP]


def _kill_while_writing(command, env, out) -> bool:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(by_style_images(out)) < BATCH_SIZE + 2 and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    if process.poll() is not None:
        return False
    process.kill()
    process.wait()
    return True


def _trial(server, tmp_path, name: str) -> dict:
    """The kills of one trial, each on a rerun of the last, then a rerun to the end; the emulator's counts."""
    dataset = f"trial{len(list(tmp_path.glob('trial*.json')))}"
    prompts = write_records(tmp_path / f"{dataset}.json", records(SAMPLES, dataset=dataset))
    out = tmp_path / dataset
    command, env = _command(prompts, out), emulator_env(server)
    killed = []
    for step, nth in TRIALS[name]:
        if step == "images_written":
            killed.append(_kill_while_writing(command, env, out))
            continue
        tripwire = KillAt(step, nth)
        server.batches.tripwire = tripwire
        tripwire.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                            text=True)
        _, stderr = tripwire.process.communicate(timeout=60)
        server.batches.tripwire = None
        assert tripwire.killed, f"{name}: the run ended before {step} #{nth} (exit {tripwire.process.returncode}): {stderr}"
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"finished: {TASKS}/{TASKS} done" in rerun.stderr

    with BatchBook(out / "ledger.sqlite") as book:
        tag = book.folder_tag()
    batches = [job for job in server.batches.batches.values() if (job.metadata or {}).get(FOLDER_KEY) == tag]
    names = {input_file_name(job.metadata["imggen_submission"]) for job in batches}
    uploads = [f for f in server.batches.files.values() if f.purpose == "batch" and f.filename in names]
    ours = {key: n for key, n in server.batches.submitted.items() if key.startswith(dataset)}
    billed = {key: n for key, n in server.batches.billed.items() if key.startswith(dataset)}
    with Ledger(out) as ledger:
        assert ledger.counts() == {"pending": 0, "running": 0, "done": TASKS, "failed": 0}
        booked = ledger.totals()["cost"]
    images = by_style_images(out)
    assert len(images) == TASKS and all(is_valid_image(path) for path in images)
    return {"trial": name, "killed": all(killed), "batches": len(batches), "uploads": len(uploads),
            "tasks submitted": len(ours), "most submissions of one task": max(ours.values()),
            "most images billed for one task": max(billed.values()), "images": len(images), "booked": booked}


@pytest.mark.slow
def test_sigkill_at_every_batch_step_never_submits_a_task_twice(tmp_path):
    assert set(STEPS) <= {step for kills in TRIALS.values() for step, _ in kills}, "a step without a trial"
    rows = []
    with emulator(batch=BatchEmulatorConfig(line_s=0.002)) as server:
        for name in TRIALS:
            rows.append(_trial(server, tmp_path, name))
    print()
    for row in rows:
        print("  ".join(f"{name}={value:.4f}" if isinstance(value, float) else f"{name}={value}"
                        for name, value in row.items()))
    for row in rows:
        assert row["killed"], f"{row['trial']}: the run was not killed there"
        assert row["batches"] == BATCHES, row
        assert row["uploads"] == BATCHES, row
        assert row["tasks submitted"] == TASKS, row
        assert row["most submissions of one task"] == 1, row
        assert row["most images billed for one task"] == 1, row
    assert len({round(row["booked"], 6) for row in rows}) == 1, "every trial books the same money"
