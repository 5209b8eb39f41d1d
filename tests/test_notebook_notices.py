"""What the notebook panel says besides its counters, in a real kernel: a rerun's resume line, a
rate-limit hold, and the training set's current stage (grids drawn, judged, tiles upscaled, uploaded)."""

from __future__ import annotations

import re

import pytest
from kernel_helpers import started_kernel, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

RESUMING = """
import asyncio
from imggen.engine.errors import ErrorKind, TaskError
from imggen.engine.job import run_job
from imggen.engine.runner import RunnerConfig
from imggen.engine.tasks import Outcome, Task
from imggen.notebook import run_in_notebook

held = []

async def work(task):
    if task.key == "t9" and not held:  # the last task meets one 429 that asks for a 3 s wait
        held.append(task.key)
        raise TaskError(ErrorKind.RATE_LIMITED, "429 too many requests", retry_after=3)
    await asyncio.sleep(0.2)
    return Outcome(cost=0.01)

def start(count):
    tasks = [Task(f"t{i}", {}, cost=0.01) for i in range(count)]
    return lambda control, reporter: run_job(OUT, tasks, work, config=RunnerConfig(concurrency=1),
                                             control=control, reporters=[reporter])

first = await run_in_notebook(start(4), title="first", interactive=False)
job = await run_in_notebook(start(10), title="again", interactive=True)
notices = []
job.notice_label.observe(lambda change: notices.append(change["new"]), "value")
"""


@pytest.fixture
def kernel():
    with started_kernel() as started:
        yield started


def test_the_panel_says_what_a_rerun_resumes_and_why_it_waits(kernel, tmp_path):
    kernel.run(RESUMING.replace("OUT", repr(str(tmp_path / "job"))), timeout=60)
    resuming = "resuming: 4 of 10 finished earlier, $0.04 spent earlier"
    # The label's values are recorded in the kernel as they are shown: the resuming line lasts only
    # the second before the 429, too short a window to be sure of catching it by asking the kernel.
    wait_until(kernel, "job.state == 'finished'", timeout=30)
    assert kernel.value("job.summary.progress.done") == 10
    notices = kernel.value("notices")
    assert notices[0] == resuming, notices  # shown while the run goes on, before the hold
    assert re.fullmatch(r"waiting [34] s: rate limited", notices[1]), notices
    assert kernel.value("job.notice_label.value") == notices[-1]


TRAINSET = """
import asyncio, io, time
import numpy as np
from PIL import Image
from imggen.notebook import run_in_notebook
from imggen.pipelines.trainset import TrainsetOptions, TrainsetParts, run_trainset
from imggen.backends.grid_drawers import MadeImage
from imggen.backends.tile_judges import HashTileJudge
from imggen.storage.stores import LocalFolderStore
from imggen.backends.upscalers import LanczosUpscaler

class SlowNoiseDrawer:
    name, output_format = "noise", "png"
    paid_model, settings = None, {"grids": "noise"}  # free, and what defines its grids

    async def draw(self, prompt, source, *, grid, seed, key):
        await asyncio.sleep(1.0)
        buffer = io.BytesIO()
        pixels = np.random.default_rng(seed).integers(0, 256, (96, 96, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format="PNG")
        return MadeImage(buffer.getvalue())

class SlowUpscaler(LanczosUpscaler):
    async def upscale(self, image, *, key):
        await asyncio.sleep(0.5)
        return await super().upscale(image, key=key)

parts = TrainsetParts(SlowNoiseDrawer(), HashTileJudge(), SlowUpscaler(), LocalFolderStore(OUT, "u", "a"))
async def build(control, reporter):
    made = await run_trainset(SOURCE, "u", "a", parts=parts, work_dir=OUT, options=TrainsetOptions(target=3),
                              control=control, reporters=[reporter])
    return made.summary

job = await run_in_notebook(build, title="training set", interactive=True)
stages = []
job.stage_label.observe(lambda change: stages.append(change["new"]), "value")
"""


def test_the_training_set_panel_shows_the_stage_that_runs(kernel, tmp_path):
    from trainset_fixtures import source_image_bytes

    source = tmp_path / "source.png"
    source.write_bytes(source_image_bytes())
    kernel.run(TRAINSET.replace("OUT", repr(str(tmp_path / "runs"))).replace("SOURCE", repr(str(source))))
    # The label's values are recorded in the kernel as they are shown: a second of drawing and half a
    # second of upscaling are too short to be sure of catching by asking the kernel on a busy machine.
    wait_until(kernel, "job.state == 'finished'", timeout=30)
    assert kernel.value("job.stage_label.value") == ""  # nothing runs any more
    stages = kernel.value("stages")
    assert "drawing 1 grid" in stages and "upscaling 3 tiles" in stages, stages
    assert stages.index("drawing 1 grid") < stages.index("upscaling 3 tiles"), stages
    assert stages[-1] == "" and kernel.value("job.summary.progress.done") == 3
