"""How every command ends a job: one summary line, what to do next, and the exit code."""

from __future__ import annotations

from rich.console import Console

from .engine.runner import RunSummary

EXIT_OK, EXIT_FAILURES, EXIT_STOPPED = 0, 1, 2


def report_summary(summary: RunSummary, console: Console) -> int:
    """Print how the run ended; return 0 (all done), 1 (some tasks failed) or 2 (stopped early)."""
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
