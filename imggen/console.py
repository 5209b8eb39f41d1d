"""How every command starts and ends a job: one start-up error, one summary, what to do next, the exit code.

Exit codes, the same for every command: 0 all done; 1 some tasks failed; 2 stopped early
(Ctrl-C, budget, quota) or could not start (busy folder, bad input, missing key). A command
that cannot start says why in one line, never with a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence, TypeVar

from rich.console import Console

from .backends.flux2 import VERBOSE_ENV
from .engine.concurrency import AUTO
from .engine.errors import STARTUP_FAILURES, CannotStart, starting
from .engine.runner import RunSummary
from .literal import line
from .storage.lock import FolderBusy
from .storage.paths import UnsafePath

EXIT_OK, EXIT_FAILURES, EXIT_STOPPED = 0, 1, 2
# What "cannot start" looks like: the request, the inputs or the machine are not fit to run. Raised
# while planning or opening a run, before anything is paid; the runner itself turns every failure
# inside a run into a failed task or a stopped run, so none of these comes from a task.
START_ERRORS = (CannotStart, FolderBusy, UnsafePath)  # raised before anything is sent
Planned = TypeVar("Planned")
RETRY_FAILED_FLAGS = ("--retry-failed", "--retry_failed")  # both spellings, in every command
NEW_ROUND_FLAGS = ("--new-round", "--new_round")
# What to do after a run that ended early. A fatal end (storage, key, quota, configuration) would end
# the same way if rerun as it is, so it asks for the cause to be fixed first.
NEXT_STEP = {"fatal": "fix the cause above, then rerun the same command; until then a rerun would stop the same "
                      "way (what was paid for is kept and not paid again)"}
RERUN = "rerun the same command to continue where this run stopped"


NOT_A_TERMINAL_WIDTH = 200  # wide enough for the progress bar's last line, with every column whole


def command_console(*, stdout: bool = False) -> Console:
    """The console a command reports on: stderr (``stdout`` for what is the command's output, such as
    a dry run's plan), and lines never hard-wrapped at 80 columns when it is a file or a pipe (a log,
    CI) rather than a terminal. There, unless ``COLUMNS`` says otherwise, it is
    :data:`NOT_A_TERMINAL_WIDTH` wide, so the progress bar's last line is not cut to ``10/24 do…``."""
    console = Console(stderr=not stdout, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = NOT_A_TERMINAL_WIDTH
    return console


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args`` taking every option in both spellings: ``--max-samples`` or ``--max_samples``.

    The seeds spell options both ways (``--max_samples``, ``--flux-steps``); a user should not have
    to remember which command took which. An unknown spelling is swapped for the known one.
    """
    known = {option for action in parser._actions for option in action.option_strings}  # argparse has no public list

    def spelled(word: str) -> str:
        name, equals, value = word.partition("=")
        if not name.startswith("--") or name in known:
            return word
        for other in (name[:2] + name[2:].replace("_", "-"), name[:2] + name[2:].replace("-", "_")):
            if other in known:
                return other + equals + value
        return word

    words = list(sys.argv[1:] if argv is None else argv)
    end = words.index("--") if "--" in words else len(words)
    args = parser.parse_args([spelled(word) for word in words[:end]] + words[end:])
    if getattr(args, "verbose", False):
        os.environ[VERBOSE_ENV] = "1"  # read where the libraries load, worker processes included
    return args


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """``--verbose``: keep the model libraries' loading bars and warnings (off by default)."""
    parser.add_argument("--verbose", action="store_true",
                        help="show diffusers' and transformers' loading bars and warnings")


def concurrency(text: str) -> int | str:
    """An argparse type: ``auto`` or a whole number (what is in flight; see :mod:`imggen.engine.concurrency`)."""
    if text == AUTO:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or {AUTO}, got {text!r}") from None


def at_least(minimum: float, kind: type = int, *, exclusive: bool = False) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` no smaller than ``minimum`` (more than it with
    ``exclusive``), so that ``--rpm 0`` or ``--grid 1`` is refused with the reason."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < minimum or (exclusive and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'more than' if exclusive else 'at least'} {minimum:g}, got {text}")
        return value
    return parse


def add_retry_failed(parser: argparse.ArgumentParser, what: str) -> None:
    """The ``--retry-failed`` (or ``--retry_failed``) flag: try the permanent failures of earlier runs again."""
    parser.add_argument(*RETRY_FAILED_FLAGS, dest="retry_failed", action="store_true",
                        help=f"also retry {what} that failed permanently in earlier runs (refused, unreadable input)")


def add_new_round(parser: argparse.ArgumentParser, what: str) -> None:
    """The ``--new-round`` (or ``--new_round``) flag: make the outputs again, with other settings if given."""
    parser.add_argument(*NEW_ROUND_FLAGS, dest="new_round", action="store_true",
                        help=f"start a new round: make the {what} again, also with settings other than the "
                        "earlier runs' (which are refused without it); the earlier rounds stay in the ledger")
def add_allow_unpriced(parser: argparse.ArgumentParser) -> None:
    """``--allow-unpriced`` (or ``--allow_unpriced``): run with ``--budget`` although a model it pays
    has no known price."""
    parser.add_argument("--allow-unpriced", action="store_true",
                        help="with --budget, run even where a model's price is unknown: the budget then caps only "
                        "the priced calls, and the summary names the unpriced ones")


def start_or_explain(command: str, console: Console, plan: Callable[[], Planned],
                     run: Callable[[Planned], int]) -> int:
    """A command in two steps: ``plan`` (reads and checks everything, sends nothing) and ``run``.

    An error while planning, or a :class:`CannotStart` the run raises before it sends anything (a
    folder in use, a model that does not load), is one "cannot start" line and exit 2. An error
    after the run began is a run failure, said as such (what was paid for is kept), exit 2.
    """
    try:
        with starting():
            planned = plan()
        return run(planned)
    except START_ERRORS as error:
        console.print(line((f"{command}: cannot start: ", "red"), _message(error)), soft_wrap=True)
        return EXIT_STOPPED
    except STARTUP_FAILURES as error:
        console.print(line((f"{command}: the run failed: ", "red"), _message(error)), soft_wrap=True)
        console.print(f"what was paid for is kept; {RERUN} once the cause is fixed", markup=False, soft_wrap=True)
        return EXIT_STOPPED
    except KeyboardInterrupt:  # before the run's own Ctrl-C handling began (e.g. while a model loads)
        console.print(f"{command}: interrupted before the run began; {RERUN}", markup=False, soft_wrap=True)
        return EXIT_STOPPED


def _message(error: BaseException) -> str:
    return getattr(error, "message", None) or str(error)


def report_summary(summary: RunSummary, console: Console) -> int:
    """Print how the run ended; return 0 (all done), 1 (some tasks failed) or 2 (stopped early)."""
    progress = summary.progress
    unpriced = f" and {summary.unpriced}" if summary.unpriced else ""
    console.print(
        f"{summary.state}: {progress.done}/{progress.total} done, {progress.failed} failed, "
        f"{progress.remaining} pending, ${progress.spent:.2f} spent{unpriced}", markup=False, soft_wrap=True,
    )
    for kind, count, first in summary.failures:
        console.print(line(("  ", ""), (f"{kind}: {count}", "red"), f" (first: {first})"), soft_wrap=True)
    if any(kind == "permanent" for kind, _, _ in summary.failures):
        console.print(f"  permanent failures are not tried again; rerun with {RETRY_FAILED_FLAGS[0]} "
                      "once their cause is fixed", markup=False, soft_wrap=True)
    if summary.message:
        console.print(line(summary.message), soft_wrap=True)
    if summary.state != "finished":
        console.print(NEXT_STEP.get(summary.state, RERUN), markup=False, soft_wrap=True)
        return EXIT_STOPPED
    return EXIT_OK if progress.failed == 0 else EXIT_FAILURES


def report_skipped(skipped: int, code: int, console: Console, *, listed: str = "before the run") -> int:
    """After the summary: how many input records were skipped (each was listed: ``listed`` says
    where), and the exit code, 1 at least when some were, so a script sees that not every row was drawn."""
    if not skipped:
        return code
    console.print(f"skipped: {skipped} input record(s), listed {listed}; fix them and rerun to draw them too",
                  markup=False, soft_wrap=True)
    return max(code, EXIT_FAILURES)
