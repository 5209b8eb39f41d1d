"""A job killed with SIGKILL at random moments, then rerun, completes every task with each side effect once.

Only tasks in flight at a kill may have their side effect repeated; the ledger names them.
"""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imggen.engine.ledger import Ledger
from imggen.storage.atomic import is_valid_image

TARGET = Path(__file__).with_name("kill_target.py")
TASKS = 150


def side_effect_counts(root: Path) -> collections.Counter:
    log = root / "side_effects.log"
    return collections.Counter(log.read_text().split()) if log.exists() else collections.Counter()


def start(root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(TARGET), str(root), str(TASKS)], stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_then_rerun_runs_each_side_effect_once(tmp_path, seed):
    rng = random.Random(seed)
    root = tmp_path / "job"
    root.mkdir()
    in_flight_at_kills: collections.Counter = collections.Counter()
    kills = 0
    for _ in range(4):
        before = sum(side_effect_counts(root).values())
        threshold = before + rng.randint(1, 30)
        process = start(root)
        deadline = time.monotonic() + 60
        while sum(side_effect_counts(root).values()) < threshold and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        if process.poll() is not None:
            break  # finished before this kill point
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        with Ledger(root) as ledger:
            in_flight_at_kills.update(ledger.keys("running"))

    final = start(root)
    output, _ = final.communicate(timeout=120)
    assert final.returncode == 0 and output.split() == ["finished", str(TASKS)]
    assert kills >= 1

    counts = side_effect_counts(root)
    assert set(counts) == {f"k{i:04d}" for i in range(TASKS)}
    for key, times in counts.items():
        assert times <= 1 + in_flight_at_kills[key], f"{key} ran {times} times but was in flight at {in_flight_at_kills[key]} kills"
    assert all(is_valid_image(root / "images" / f"k{i:04d}.png") for i in range(TASKS))
    with Ledger(root) as ledger:
        assert ledger.counts() == {"pending": 0, "running": 0, "done": TASKS, "failed": 0}
