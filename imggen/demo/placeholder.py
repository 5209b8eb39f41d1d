"""The engine's placeholder job: labelled images drawn on the CPU, run through the whole engine.

It needs no key, GPU or network, and shows what every pipeline gets from the engine: a rate
limit, retries (every fifth image fails once with a simulated timeout), resume, the state and
stats files, and progress.
"""

from __future__ import annotations

import argparse
import asyncio
import colorsys
import io
import random
from pathlib import Path

from PIL import Image, ImageDraw
from rich.console import Console

from ..console import report_summary
from ..engine.errors import ErrorKind, TaskError
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


def draw_placeholder(index: int, subject: str, size: int = 128) -> bytes:
    """A PNG with a colour derived from the index and the subject written on it."""
    red, green, blue = colorsys.hsv_to_rgb((index * 0.137) % 1.0, 0.55, 0.9)
    image = Image.new("RGB", (size, size), (int(red * 255), int(green * 255), int(blue * 255)))
    ImageDraw.Draw(image).text((8, size // 2 - 6), f"{index}: {subject}", fill=(20, 20, 20))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class DemoWork:
    """The work function: wait like a remote call, fail once on every fifth image, then draw and save."""

    def __init__(self, root: Path, latency_s: float = 0.2) -> None:
        self.root = Path(root)
        self.latency_s = latency_s
        self._failed_once: set[str] = set()

    async def __call__(self, task: Task) -> Outcome:
        await asyncio.sleep(self.latency_s * random.uniform(0.5, 1.5))
        index = task.payload["index"]
        if index % 5 == 4 and task.key not in self._failed_once:
            self._failed_once.add(task.key)
            raise TaskError(ErrorKind.TRANSIENT, "simulated timeout (the demo fails every fifth image once)")
        atomic_write_bytes(self.root / task.outputs[0], draw_placeholder(index, task.payload["subject"]))
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
