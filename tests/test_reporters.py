"""What the terminal display says: a rerun says what it resumes, a rate-limit hold says why the bar stands
still (once per hold), the bar's done count is the summary's (failures are counted apart), and the
bar shows the stage a job tells (the training set's grids, judging, upscales, uploads)."""

from __future__ import annotations

import io
import re
import time

import pytest
from rich.console import Console

from imggen.engine.events import Progress, RunFinished, RunStarted, StageChanged, TaskFinished, TaskRetrying
from imggen.engine.ledger import Ledger
from imggen.engine.reporters import RichReporter
from imggen.engine.runner import Runner, RunnerConfig

from conftest import Recorder, make_tasks


def screen_of(events) -> str:
    screen = io.StringIO()
    reporter = RichReporter("test", Console(file=screen, width=200))
    for event in events:
        reporter(event)
    return screen.getvalue()


def test_a_hold_is_announced_once_and_the_bar_counts_what_the_summary_counts():
    start = Progress(total=10)
    after = start.evolve(done=7, failed=2)
    text = screen_of([
        RunStarted(start),
        TaskRetrying("t1", "rate_limited", "429", 20.0, start),
        TaskRetrying("t2", "rate_limited", "429", 19.5, start),  # the same hold, seen by another worker
        TaskRetrying("t3", "transient", "500", 2.0, start),
        TaskFinished("t9", "failed", after, "permanent", "refused"),
        RunFinished(after),
    ])
    assert text.count("waiting 20 s: rate limited") == 1 and "waiting 2 s" not in text
    assert re.search(r"7/10 done", text) and "9/10" not in text


async def test_a_rerun_says_what_it_resumes(out):
    with Ledger(out) as ledger:
        await Runner(ledger, Recorder(), config=RunnerConfig(concurrency=2)).run(make_tasks(3, cost=0.04))
        screen = io.StringIO()
        display = RichReporter("test", Console(file=screen, width=200))
        await Runner(ledger, Recorder(), reporters=[display]).run(make_tasks(5, cost=0.04))
    assert "resuming: 3 of 5 finished earlier, $0.12 spent earlier" in screen.getvalue()


def test_the_bar_shows_the_stage_the_job_tells():
    start = Progress(total=3)
    text = screen_of([RunStarted(start), StageChanged(start, "drawing 1 grid"),
                      StageChanged(start, "upscaling 2 tiles, uploading 1 image"), RunFinished(start)])
    assert "upscaling 2 tiles, uploading 1 image" in text


class NoiseGridDrawer:
    """Grids of noise, whose tiles all differ."""

    name, output_format = "noise", "png"
    paid_model, settings = None, {"grids": "noise"}  # free, and what defines its grids

    async def draw(self, prompt, source, *, grid, seed, key):
        import numpy as np
        from PIL import Image

        from imggen.backends.grid_drawers import MadeImage

        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(seed).integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(buffer, "PNG")
        return MadeImage(buffer.getvalue())


async def test_the_training_set_tells_each_stage_as_it_runs(tmp_path):
    from imggen.pipelines.trainset import TrainsetOptions, TrainsetParts, run_trainset
    from imggen.backends.tile_judges import HashTileJudge
    from imggen.storage.stores import LocalFolderStore
    from imggen.backends.upscalers import LanczosUpscaler
    from trainset_fixtures import source_image_bytes

    (tmp_path / "source.png").write_bytes(source_image_bytes())
    parts = TrainsetParts(NoiseGridDrawer(), HashTileJudge(), LanczosUpscaler(), LocalFolderStore(tmp_path, "u", "a"))
    stages: list[str] = []
    screen = io.StringIO()
    reporters = [lambda event: isinstance(event, StageChanged) and stages.append(event.stage),
                 RichReporter("training images", Console(file=screen, width=200))]
    result = await run_trainset(tmp_path / "source.png", "u", "a", parts=parts, work_dir=tmp_path / "runs",
                                options=TrainsetOptions(target=2), reporters=reporters)
    assert len(result.images) == 2
    first = [next(i for i, stage in enumerate(stages) if doing in stage)
             for doing in ("drawing 1 grid", "judging 1 grid", "upscaling", "uploading")]
    assert first == sorted(first), stages
    assert stages[-1] == "", "nothing runs at the end"


def test_at_80_columns_the_counts_and_the_money_stay_whole_and_the_details_wrap():
    console = Console(file=io.StringIO(), width=80, force_terminal=False, soft_wrap=True)
    reporter = RichReporter("training set", console)
    progress = Progress(total=36, done=18, failed=1, spent=12.4567, state="running", running=3, in_flight_target=4,
                        limit_per_min=60)
    reporter(RunStarted(progress))
    reporter(StageChanged(progress, "grids: drawing 2, judging 1; upscales: 3"))
    reporter(RunFinished(progress, None))
    shown = console.file.getvalue()
    assert "18/36 done  53% $12.46 1 failed" in shown
    assert "…" not in shown and "upscales: 3" in " ".join(shown.split())  # nothing cut, the details wrapped
    assert max(map(len, shown.splitlines())) <= 80


def test_an_opening_burst_never_reads_as_a_rate_above_the_limit():
    progress = Progress(total=120, done=60, state="running", limit_per_min=60, started_at=time.monotonic() - 27)
    assert progress.rate_per_min == pytest.approx(60, abs=0.5)  # 60 finished in 27 s: 60 in the first minute
    assert progress.eta_s == pytest.approx(27, abs=0.5)  # the time left still follows the pace so far
    later = Progress(total=120, done=90, state="running", started_at=time.monotonic() - 120)
    assert later.rate_per_min == pytest.approx(45, abs=0.5)


def test_the_pace_names_the_tokens_limit_when_it_binds():
    assert Progress(total=10, running=2, in_flight_target=4, limit_per_min=60).pace == "in flight 2/4, limit 60/min"
    assert Progress(total=10, running=2, in_flight_target=4, limit_per_min=60, limit_by="tokens").pace == (
        "in flight 2/4, limit 60/min by tokens")
