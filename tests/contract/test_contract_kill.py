"""The contract, a kill: SIGKILL in the middle of a run (images made, work in flight), then the same
command again. The rerun ends with exit 0 and every image of the job, each a whole image and none the
same picture as another, and nothing is paid twice except what was in flight at the kill:

- one paid call per image (styles on OpenAI, a Batch API line): all the provider received, kill and
  rerun together, is at most the job's images plus the calls it had received at the kill for images
  not on disk then;
- a run whose ledger records each paid call the moment the provider answers its create (the training
  set on Replicate: grids and upscales): no task key is recorded twice, a call recorded before the kill
  was collected by the rerun (used), not created again, and the provider created no more than the
  keys recorded plus the creates it had answered but the ledger did not hold at the kill;
- a local model pays nothing; it ends with exactly the job's images.
"""

from __future__ import annotations

import collections
import hashlib
import signal
import subprocess
import time
from dataclasses import dataclass

import pytest
from PIL import Image
from run_kinds import KINDS, Run, running_tasks

from imggen.engine.paid_calls import OPEN, USED
from imggen.storage.atomic import is_valid_image

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@dataclass(frozen=True)
class AtTheKill:
    images: int  # images on disk
    paid_calls: int  # paid calls the provider received from the killed process
    recorded: tuple[tuple[str, str], ...]  # the paid calls the ledger held, (task key, state)


def in_flight(run: Run) -> bool:
    """At least one image made, and work in flight: a task the ledger has running (and, where the
    ledger records paid calls, one recorded and not collected yet)."""
    if run.images() < 1 or running_tasks(run.ledger_root) < 1:
        return False
    return run.recorded_calls is None or any(state == OPEN for _, state in run.recorded_calls())


def kill_mid_run(process: subprocess.Popen, run: Run, timeout_s: float = 120) -> AtTheKill:
    """SIGKILL ``process`` at a moment ``in_flight`` holds while it is frozen and the provider has read
    and answered what it sent; what was on disk then, and what the provider billed the process for."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, "the command ended before the moment to kill it"
        assert time.monotonic() < deadline, "the moment to kill never came"
        if in_flight(run):
            process.send_signal(signal.SIGSTOP)
            run.settle()
            if in_flight(run):
                images, recorded = run.images(), tuple(run.recorded_calls()) if run.recorded_calls else ()
                process.kill()
                process.wait()
                # What the provider bills after this came from the dead process, so it was in flight at
                # the kill (a busy machine can leave a request unanswered past the settle above).
                run.settle()
                return AtTheKill(images, run.paid_calls(), recorded)
            process.send_signal(signal.SIGCONT)
        time.sleep(0.005)


def picture(path) -> str:
    with Image.open(path) as image:
        return hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()


@pytest.mark.parametrize("kind", list(KINDS))
def test_sigkill_then_a_rerun_finishes_paying_nothing_twice(kind, tmp_path, klein):
    with KINDS[kind](tmp_path, klein) as run:
        process = subprocess.Popen(run.command, env=run.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        killed = kill_mid_run(process, run)
        assert 1 <= killed.images < run.expected

        rerun = subprocess.run(run.command, env=run.env, capture_output=True, text=True, timeout=240)
        run.settle()
        assert rerun.returncode == 0, rerun.stderr
        images = run.image_files()
        assert len(images) == run.expected, rerun.stderr
        assert all(is_valid_image(path) for path in images), [str(p) for p in images if not is_valid_image(p)]
        twins = [names for names in _by_picture(images).values() if len(names) > 1]
        assert not twins, f"the same picture more than once: {twins}"

        if run.recorded_calls is not None:
            recorded = run.recorded_calls()
            keys = collections.Counter(key for key, _ in recorded)
            assert not [key for key, n in keys.items() if n > 1], f"created again for a recorded key: {keys}"
            states = dict(recorded)
            open_at_kill = {key for key, state in killed.recorded if state == OPEN}
            assert open_at_kill, "no recorded call was in flight at the kill"
            assert {key: states[key] for key in open_at_kill} == dict.fromkeys(open_at_kill, USED), \
                "a call recorded before the kill was not collected"
            assert OPEN not in states.values(), "a call is left open"
            answered_not_recorded = killed.paid_calls - len(killed.recorded)
            assert run.paid_calls() <= len(keys) + answered_not_recorded, \
                f"{run.paid_calls()} paid calls for {len(keys)} keys, {answered_not_recorded} unrecorded at the kill"
        else:  # one paid call per image (a local model: none)
            paid_again = killed.paid_calls - killed.images  # sent at the kill, for images not on disk then
            assert run.paid_calls() <= run.expected + paid_again, \
                f"{run.paid_calls()} paid calls for {run.expected} images ({killed})"


def _by_picture(images) -> dict[str, list[str]]:
    found = collections.defaultdict(list)
    for path in images:
        found[picture(path)].append(path.name)
    return found
