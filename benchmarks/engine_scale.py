"""Plan and run a million no-op tasks through the ledger and runner, then resume the finished job.

Prints ``RESULT plan_s=<s> resume_s=<s> per_task_ms=<ms> peak_rss_mb=<MB>``.
Targets on a 2-core machine: plan_s + resume_s <= 10, per_task_ms <= 1, peak_rss_mb <= 500.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from imggen.engine.events import RunStarted
from imggen.engine.ledger import Ledger
from imggen.engine.runner import Runner, RunnerConfig
from imggen.engine.tasks import Outcome, Task


async def no_op(task: Task) -> Outcome:
    return Outcome()


def tasks(n: int):
    return (Task(f"sample-{i:07d}", {"i": i}) for i in range(n))


async def timed_run(folder: str, n: int, concurrency: int) -> tuple[float, float, int]:
    """Return (seconds to plan, seconds to run after planning, tasks done)."""
    marks: dict[str, float] = {}

    def mark_start(event: object) -> None:
        if isinstance(event, RunStarted):
            marks["planned"] = time.perf_counter()

    with Ledger(folder) as ledger:
        runner = Runner(ledger, no_op, config=RunnerConfig(concurrency=concurrency), reporters=[mark_start])
        began = time.perf_counter()
        summary = await runner.run(tasks(n))
        ended = time.perf_counter()
    return marks["planned"] - began, ended - marks["planned"], summary.progress.done


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        plan_s, run_s, done = asyncio.run(timed_run(folder, args.tasks, args.concurrency))
        print(f"first run: planned {args.tasks} in {plan_s:.2f}s, ran {done} in {run_s:.2f}s", flush=True)
        replan_s, rerun_s, done_again = asyncio.run(timed_run(folder, args.tasks, args.concurrency))
        resume_s = replan_s + rerun_s
        print(f"resume: replanned in {replan_s:.2f}s, found {done_again} done, finished in {rerun_s:.2f}s", flush=True)
    peak_mb = peak_rss_mb()
    per_task_ms = 1000 * run_s / args.tasks
    print(f"RESULT plan_s={plan_s:.2f} resume_s={resume_s:.2f} per_task_ms={per_task_ms:.4f} peak_rss_mb={peak_mb:.0f}")


if __name__ == "__main__":
    main()
