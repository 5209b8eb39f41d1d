"""Resume from the ledger: finished work is never redone, interrupted work is healed or rerun."""

from __future__ import annotations

import sqlite3

from imggen.engine.errors import ErrorKind, TaskError
from imggen.engine.ledger import Ledger
from imggen.engine.runner import Runner, RunnerConfig
from imggen.engine.tasks import Task

from conftest import Recorder, make_tasks, png_bytes


async def run(out, work, tasks, **config):
    with Ledger(out) as ledger:
        return await Runner(ledger, work, config=RunnerConfig(**config)).run(tasks)


def test_ledger_is_sqlite_in_wal_mode_inside_the_output_folder(out):
    with Ledger(out) as ledger:
        assert ledger.path.parent == out
    (mode,) = sqlite3.connect(out / "ledger.sqlite").execute("PRAGMA journal_mode").fetchone()
    assert mode == "wal"


async def test_done_tasks_are_not_run_again(out):
    work = Recorder()
    await run(out, work, make_tasks(5))
    summary = await run(out, work, make_tasks(8))
    assert work.calls == [f"t{i:03d}" for i in range(5)] + ["t005", "t006", "t007"]
    assert summary.progress.done == 8 and summary.progress.done_at_start == 5


async def test_a_smaller_plan_runs_only_its_own_tasks(out):
    work = Recorder()
    all_tasks = make_tasks(10)
    with Ledger(out) as ledger:
        run_id = ledger.begin_run()
        ledger.plan(all_tasks, run_id)  # planned earlier, never run
    summary = await run(out, work, all_tasks[:3])
    assert sorted(work.calls) == ["t000", "t001", "t002"] and summary.progress.total == 3


async def test_tasks_left_running_by_a_killed_process_go_back_to_pending(out):
    with Ledger(out) as ledger:
        run_id = ledger.begin_run()
        ledger.plan(make_tasks(2), run_id)
        ledger.mark_started("t000")  # the process dies here
    work = Recorder()
    summary = await run(out, work, make_tasks(2))
    assert sorted(work.calls) == ["t000", "t001"] and summary.progress.done == 2
    with Ledger(out) as ledger:
        assert ledger.task("t000")["attempts"] == 2


async def test_valid_output_on_disk_heals_the_task_without_calling_the_backend(out):
    tasks = [Task(f"img{i}", {}, outputs=(f"images/img{i}.png",)) for i in range(3)]
    (out / "images").mkdir(parents=True)
    (out / "images/img0.png").write_bytes(png_bytes())  # written, but the ledger was never told
    (out / "images/img1.png").write_bytes(png_bytes()[:20])  # half-written by something else
    work = Recorder()
    summary = await run(out, work, tasks)
    assert sorted(work.calls) == ["img1", "img2"]
    assert summary.progress.healed == 1
    with Ledger(out) as ledger:
        assert ledger.task("img0")["status"] == "done" and ledger.task("img0")["healed"] == 1


async def test_permanent_failures_stay_failed_on_rerun_unless_asked(out):
    def refuse(task, call):
        if task.key == "t000":
            raise TaskError(ErrorKind.PERMANENT, "moderation_blocked")

    work = Recorder(script=refuse)
    await run(out, work, make_tasks(2))
    await run(out, work, make_tasks(2))
    assert work.calls.count("t000") == 1
    await run(out, work, make_tasks(2), retry_failed=True)
    assert work.calls.count("t000") == 2


async def test_transient_failures_are_retried_on_rerun(out):
    def flaky(task, call):
        if call <= 2:
            raise TaskError(ErrorKind.TRANSIENT, "503")

    work = Recorder(script=flaky)
    first = await run(out, work, make_tasks(1), max_attempts=2, backoff_base_s=0.0)
    assert first.progress.failed == 1
    second = await run(out, work, make_tasks(1), max_attempts=2, backoff_base_s=0.0)
    assert second.progress.done == 1 and second.progress.failed == 0


def test_a_ledger_names_its_tables_of_tasks_also_from_a_relative_folder(tmp_path, monkeypatch):
    from imggen.engine.ledger import Ledger, has_table

    monkeypatch.chdir(tmp_path)
    Ledger("out").close()
    Ledger("out", table="grids").close()
    assert has_table("out", "tasks") and has_table("out", "grids") and not has_table("out", "tiles")
    assert not has_table("nowhere", "tasks")


async def test_a_ledger_written_before_the_wasted_column_gains_it_and_runs_on(out):
    """A folder from an earlier version: its tasks table has no ``wasted`` column."""
    from imggen.engine.ledger_schema import SCHEMA, TASKS_TABLE

    old_table = TASKS_TABLE.replace("    wasted REAL NOT NULL DEFAULT 0,  -- billed for answers that could not be "
                                    "used (an image that never came)\n", "")
    assert "wasted REAL" not in old_table
    out.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(out / "ledger.sqlite") as db:
        db.executescript(SCHEMA + old_table.format(table="tasks"))
        db.execute("INSERT INTO tasks (key, payload, outputs, plan, status, cost) VALUES ('t000', '{}', '[]', 1, 'done', 0.5)")
    work = Recorder()
    summary = await run(out, work, make_tasks(3))
    assert summary.progress.done == 3 and sorted(work.calls) == ["t001", "t002"]
    with Ledger(out) as ledger:
        assert ledger.totals()["cost"] == 0.5 and ledger.totals()["wasted"] == 0.0
