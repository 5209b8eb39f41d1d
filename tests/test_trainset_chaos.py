"""Chaos for ``imggen trainset``: about 20% mixed faults and repeated SIGKILLs of a real run process, then a final rerun.

Faults, from the contract: polls answering 500/503, dropping the connection or answering late;
creates throttled with 429 in every documented form; predictions that fail; output files that
trickle. Each kill comes at a random moment of a run. A prediction the server created but the
ledger never heard of is one whose create was in flight at a kill: the only kind that may be paid
again. Run with ``-s`` to see the counts.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from PIL import Image

from imggen.backends.openai_models import DEFAULT_VISION_MODEL
from imggen.backends.replicate_catalog import TOPAZ_IMAGE_UPSCALE, replicate_models
from imggen.emulators.fault_plan import FaultRates
from imggen.emulators.replicate_faults import ReplicateFaults
from imggen.engine.ledger import Ledger
from imggen.pipelines.trainset import job_root
from test_trainset_kill import ACTOR, USER, start
from trainset_fixtures import BUCKET, running_services, source_file, wait_until_creates_are_answered  # noqa: F401

KILLS = 4
FAULTS = ReplicateFaults(FaultRates(server_error=0.1, drop=0.05, slow=0.05), slow_poll_s=0.5, throttle_rate=0.2,
                         throttle_s=1, file_body_s=0.1, seed=11)


def recorded_ids(root: Path) -> set[str]:
    """Every prediction id the run's ledger has recorded."""
    with contextlib.closing(sqlite3.connect(root / "ledger.sqlite")) as db:
        try:
            return {call_id for (call_id,) in db.execute("SELECT call_id FROM paid_calls")}
        except sqlite3.OperationalError:
            return set()


def booked_answers(root: Path) -> dict[str, int]:
    """The vision answers booked in the run's ledger, by state (used, wasted)."""
    with contextlib.closing(sqlite3.connect(root / "ledger.sqlite")) as db:
        rows = db.execute("SELECT state, COUNT(*) FROM paid_calls WHERE model = ? GROUP BY state",
                          (DEFAULT_VISION_MODEL,)).fetchall()
    return {"used": 0, "wasted": 0, **dict(rows)}


@pytest.mark.slow
def test_chaos_kills_and_faults_pay_only_for_what_was_in_flight(source_file, tmp_path):
    output = tmp_path / "runs"
    output.mkdir()
    root = job_root(output, USER, ACTOR)
    moments = random.Random(7)
    in_flight_at_kills = 0
    with running_services(grid_latency_s=1.2, upscale_latency_s=0.8, faults=FAULTS, random_seed=2) as services:
        emulator = services.replicate
        for behaviour in emulator.config.behaviours.values():
            behaviour.failure_rate = 0.1
        kills = 0
        for _ in range(KILLS):
            before = len(emulator.predictions)
            process = start(services, source_file, output)
            while len(emulator.predictions) == before and process.poll() is None:
                time.sleep(0.01)
            time.sleep(moments.uniform(0.0, 1.2))  # somewhere in the middle of paid work
            if process.poll() is not None:
                break  # it finished first
            process.send_signal(signal.SIGKILL)
            kills += 1
            process.wait()
            wait_until_creates_are_answered(emulator)  # the creates it had sent, however busy the machine
            unknown = set(emulator.predictions) - recorded_ids(root)
            in_flight_at_kills = len(unknown)  # cumulative: created at a kill, never recorded
        final = start(services, source_file, output)
        out, err = final.communicate(timeout=300)
        assert final.returncode == 0, err
        objects = services.s3().list_objects_v2(Bucket=BUCKET)["Contents"]
        images = [o for o in objects if o["Key"].endswith(".jpg")]
        bodies = [services.s3().get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in images]
        lost = [p for p in emulator.predictions.values() if p.id not in recorded_ids(root) and p.status == "succeeded"]
        prices = {ref: model.price_usd_per_prediction or 0.0 for ref, model in replicate_models().items()}
        billed = sum(emulator.counts.paid.values())
        billed_usd = emulator.counts.billed_usd()
        lost_usd = sum(prices[p.model] for p in lost)
        served_chat = list(services.openai.requests)

    with Ledger(root, table="grids") as grids:
        grids_used = len(list(grids.keys("done")))
    tasks = grids_used + 20
    stats = json.loads((root / "processing_stats.json").read_text())
    repaid = billed - tasks
    print(f"\nCHAOS kills={kills} tasks={tasks} billed={billed} used={stats['used_calls']} repaid={repaid} "
          f"lost={len(lost)} in_flight_at_kills={in_flight_at_kills} throttled={emulator.counts.throttled} "
          f"poll_faults={dict(emulator.faults.poll_faults)} failed={emulator.counts.finished['failed']} "
          f"billed_usd={billed_usd:.2f} stats_billed_usd={stats['billed_cost_usd']:.2f}")

    assert kills >= KILLS - 1 and len(out.split()) == 20 and len(images) == 20
    assert len(objects) == 41  # each image with its caption, and metadata.jsonl
    for body in bodies:
        with Image.open(io.BytesIO(body)) as image:
            image.load()
            assert image.format == "JPEG"
    assert emulator.counts.paid[TOPAZ_IMAGE_UPSCALE] <= 20 + in_flight_at_kills
    assert billed <= tasks + in_flight_at_kills
    assert len(lost) <= in_flight_at_kills
    assert stats["billed_cost_usd"] == stats["total_cost_usd"] == pytest.approx(billed_usd - lost_usd)
    answers = booked_answers(root)  # the judge's, each billed; one served just before a kill may be missing
    booked = answers["used"] + answers["wasted"]
    assert 0 < booked <= sum(r.path == "/v1/chat/completions" and r.status == 200 for r in served_chat)
    assert stats["billed_calls"] == billed - len(lost) + booked and stats["used_calls"] == tasks + answers["used"]
    assert stats["open_calls"] == 0 and stats["wasted_calls"] == answers["wasted"]
    assert stats["successful_downloads"] == 20
