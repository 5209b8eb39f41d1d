"""The ``imggen`` command: one subcommand per job."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from rich.console import Console

from .engine.job import JobFiles, run_job
from .engine.reporters import RichReporter
from .engine.runner import RateLimit, RunnerConfig, RunSummary

EXIT_OK, EXIT_FAILURES, EXIT_STOPPED = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imggen",
        description="Build image datasets with generative models: resumable, rate limited, with progress.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run a small built-in job offline (no keys, no GPU, no network)")
    demo.add_argument("--output", type=Path, default=Path("demo-output"), help="output folder (default: %(default)s)")
    demo.add_argument("--count", type=int, default=40, help="images to draw (default: %(default)s)")
    demo.add_argument("--rpm", type=float, default=600, help="requests per minute (default: %(default)s)")
    demo.add_argument("--concurrency", type=int, default=8, help="tasks in flight (default: %(default)s)")
    demo.add_argument("--latency", type=float, default=0.3, help="seconds per simulated call (default: %(default)s)")
    demo.set_defaults(handler=_run_demo)
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import DemoWork, demo_tasks

    console = Console(stderr=True)
    config = RunnerConfig(
        concurrency=args.concurrency, rate_limit=RateLimit.per_minute(args.rpm), backoff_base_s=0.5
    )
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
    return _report(summary, console)


def _report(summary: RunSummary, console: Console) -> int:
    progress = summary.progress
    console.print(
        f"{summary.state}: {progress.done}/{progress.total} done, {progress.failed} failed, "
        f"{progress.remaining} pending, ${progress.spent:.2f} spent"
    )
    if summary.message:
        console.print(summary.message)
    if summary.state != "finished":
        console.print("rerun the same command to continue where this run stopped")
        return EXIT_STOPPED
    return EXIT_OK if progress.failed == 0 else EXIT_FAILURES


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
