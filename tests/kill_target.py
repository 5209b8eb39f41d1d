"""A job for the kill-and-resume tests: each task records a side effect, then writes its image.

Run as ``python kill_target.py OUTPUT_DIR TASKS``. The side-effect log stands in for a paid call.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from pathlib import Path

from imggen.engine.job import run_job
from imggen.engine.runner import RunnerConfig
from imggen.engine.tasks import Outcome, Task
from imggen.storage.atomic import atomic_write_bytes

sys.path.insert(0, str(Path(__file__).parent))
from conftest import png_bytes  # noqa: E402


def main() -> None:
    root, count = Path(sys.argv[1]), int(sys.argv[2])
    side_effects = os.open(root / "side_effects.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    async def work(task: Task) -> Outcome:
        os.write(side_effects, f"{task.key}\n".encode())
        os.fsync(side_effects)
        await asyncio.sleep(random.uniform(0.0, 0.02))
        atomic_write_bytes(root / task.outputs[0], png_bytes((task.payload["i"] % 256, 0, 0)))
        return Outcome(outputs=task.outputs)

    tasks = [Task(f"k{i:04d}", {"i": i}, outputs=(f"images/k{i:04d}.png",)) for i in range(count)]
    summary = asyncio.run(run_job(root, tasks, work, config=RunnerConfig(concurrency=4)))
    print(summary.state, summary.progress.done)


if __name__ == "__main__":
    main()
