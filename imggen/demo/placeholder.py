"""The engine's placeholder job: labelled images drawn on the CPU, run through the whole engine.

It needs no key, GPU or network, and shows what every pipeline gets from the engine: a rate
limit, retries (every fifth image fails once with a simulated timeout), resume, the state and
stats files, and progress.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rich.console import Console

from ..console import report_summary
from ..emulators.placeholder_provider import PlaceholderProvider
from ..engine.job import JobFiles, run_job
from ..engine.reporters import RichReporter
from ..engine.runner import RateLimit, RunnerConfig
from ..engine.tasks import Outcome, Task
from ..storage.atomic import atomic_write_bytes

DEMO_SUBJECTS = ("lighthouse", "fox", "teapot", "glacier", "violin", "cactus", "tram", "owl")


def demo_tasks(count: int) -> list[Task]:
    """``count`` placeholder images, keyed like the style matrix's files."""
    tasks = []
    for index in range(count):
        subject = DEMO_SUBJECTS[index % len(DEMO_SUBJECTS)]
        name = f"demo_{index:03d}_{subject}.png"
        tasks.append(Task(name, {"index": index, "subject": subject}, outputs=(f"images/{name}",)))
    return tasks


class DemoWork:
    """The work function: ask the placeholder provider for the image, then save it."""

    def __init__(self, root: Path, latency_s: float = 0.2) -> None:
        self.root = Path(root)
        self.provider = PlaceholderProvider(latency_s)

    async def __call__(self, task: Task) -> Outcome:
        data = await self.provider.draw(task.key, task.payload["index"], task.payload["subject"])
        atomic_write_bytes(self.root / task.outputs[0], data)
        return Outcome(outputs=task.outputs, provenance={"backend": "demo placeholder"})


def main(argv: list[str] | None = None) -> int:
    """``imggen demo engine``: draw placeholder images through the engine into an output folder."""
    parser = argparse.ArgumentParser(prog="imggen demo engine", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("engine-demo-output"), help="output folder (default: %(default)s)")
    parser.add_argument("--count", type=int, default=40, help="images to draw (default: %(default)s)")
    parser.add_argument("--rpm", type=float, default=600, help="requests per minute (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=8, help="tasks in flight (default: %(default)s)")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per simulated call (default: %(default)s)")
    args = parser.parse_args(argv)

    console = Console(stderr=True)
    config = RunnerConfig(concurrency=args.concurrency, rate_limit=RateLimit.per_minute(args.rpm), backoff_base_s=0.5)
    summary = asyncio.run(
        run_job(
            JobFiles(args.output),
            demo_tasks(args.count),
            DemoWork(args.output, latency_s=args.latency),
            config=config,
            reporters=[RichReporter("demo", console)],
            handle_signals=True,
        )
    )
    console.print(f"images in {args.output / 'images'}; stats in {args.output / 'processing_stats.json'}")
    return report_summary(summary, console)
