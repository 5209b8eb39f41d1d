"""The seed's files as views of the ledger: generation_state.json and processing_stats.json, and the run log."""

from __future__ import annotations

import io
import json
from datetime import datetime

from rich.console import Console

from imggen.engine.errors import ErrorKind, TaskError
from imggen.engine.job import run_job
from imggen.engine.reporters import RichReporter
from imggen.engine.runner import RunnerConfig

from conftest import Recorder, make_tasks


def script(task, call):
    if task.key == "t002":
        raise TaskError(ErrorKind.PERMANENT, "content_policy_violation")
    if task.key == "t003" and call == 1:
        raise TaskError(ErrorKind.RATE_LIMITED, "rate_limit_exceeded", retry_after=0.01)
    if task.key == "t004" and call == 1:
        raise TaskError(ErrorKind.TRANSIENT, "connection reset", connection_error=True)


async def test_state_and_stats_files_have_the_seed_shapes(out):
    summary = await run_job(out, make_tasks(12), Recorder(script=script), config=RunnerConfig(backoff_base_s=0.0))
    assert summary.state == "finished"

    state = json.loads((out / "generation_state.json").read_text())
    assert set(state) == {"completed_samples", "failed_samples", "last_chunk_index", "timestamp"}
    assert sorted(state["completed_samples"]) == sorted(f"t{i:03d}" for i in range(12) if i != 2)
    (failure,) = state["failed_samples"]
    assert failure["key"] == "t002" and failure["error_kind"] == "permanent" and failure["attempts"] == 1
    assert state["last_chunk_index"] == 12 // 5
    datetime.fromisoformat(state["timestamp"])

    stats = json.loads((out / "processing_stats.json").read_text())
    assert stats["total_attempts"] == 14
    assert stats["successful_downloads"] == 11 and stats["failed_downloads"] == 1
    assert stats["rate_limit_hits"] == 1 and stats["connection_errors"] == 1
    assert stats["success_rate"] == round(11 / 12, 4)
    assert stats["total_duration_seconds"] > 0
    assert datetime.fromisoformat(stats["start_time"]) <= datetime.fromisoformat(stats["end_time"])

    log = (out / "run.log").read_text()
    assert "failed t002 [permanent] content_policy_violation" in log
    assert "retry t003" in log and "run finished: 11 done, 1 failed" in log


async def test_a_run_that_ends_before_any_task_finishes_still_writes_its_state_and_stats(out):
    def no_worker_left(task, call):  # as a local model whose every worker failed to load answers
        raise TaskError(ErrorKind.FATAL, "no worker process left to generate images")

    summary = await run_job(out, make_tasks(3), Recorder(script=no_worker_left))
    assert summary.state == "fatal" and "no worker" in summary.message
    assert json.loads((out / "processing_stats.json").read_text())["successful_downloads"] == 0
    assert json.loads((out / "generation_state.json").read_text())["completed_samples"] == []


async def test_rich_display_shows_counts_failures_and_money(out):
    buffer = io.StringIO()
    console = Console(file=buffer, width=160, force_terminal=False)
    await run_job(
        out, make_tasks(6, cost=0.04), Recorder(script=script),
        config=RunnerConfig(backoff_base_s=0.0), reporters=[RichReporter("styles", console)],
    )
    text = buffer.getvalue()
    assert "5/6 done" in text and "1 failed" in text and "$0.20" in text  # as the summary counts them
    assert "failed t002: content_policy_violation" in text
