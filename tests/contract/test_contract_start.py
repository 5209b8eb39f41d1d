"""The contract, start-up: one kind of start-up error. Whatever goes wrong while a command plans (a
missing file, a bad value, no GPU) is one "cannot start" line and exit 2; an error after the run
began is said as a run failure, never as "cannot start" (money may have been spent by then). On every
kind of run (see run_kinds), an input that cannot be used is one line, exit 2, and nothing is sent or made."""

from __future__ import annotations

import io
import subprocess

import pytest
from rich.console import Console
from run_kinds import KINDS

from imggen.console import start_or_explain
from imggen.engine.errors import CannotStart, TaskError, ErrorKind


def said(plan, run) -> tuple[int, str]:
    out = io.StringIO()
    code = start_or_explain("imggen test", Console(file=out, width=200), plan, run)
    return code, out.getvalue()


def fail(error: Exception):
    def raise_it(*args):
        raise error
    return raise_it


@pytest.mark.parametrize("error", [FileNotFoundError("prompts.csv: no such file"), ValueError("size 7x7"),
                                   RuntimeError("no GPU is visible"), TaskError(ErrorKind.FATAL, "no key"),
                                   CannotStart("no key")])
def test_a_problem_while_planning_is_one_cannot_start_line(error):
    code, text = said(fail(error), lambda planned: 0)
    (line,) = text.splitlines()
    assert code == 2 and line.startswith("imggen test: cannot start: ") and "fatal:" not in line


@pytest.mark.parametrize("error", [ValueError("metadata.jsonl: bad row"), RuntimeError("the bucket went away"),
                                   TaskError(ErrorKind.FATAL, "storage refused the write")])
def test_an_error_after_the_run_began_is_a_run_failure(error):
    code, text = said(lambda: "planned", fail(error))
    assert code == 2 and "cannot start" not in text
    assert text.startswith(f"imggen test: the run failed: {getattr(error, 'message', None) or error}")
    assert "what was paid for is kept" in text


def test_the_run_may_still_refuse_to_start_before_it_sends_anything():
    code, text = said(lambda: "planned", fail(CannotStart("the folder is in use by a running job")))
    assert code == 2 and text.startswith("imggen test: cannot start: the folder is in use")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", list(KINDS))
def test_an_unusable_input_is_one_line_exit_2_and_nothing_is_sent(kind, tmp_path, klein):
    with KINDS[kind](tmp_path, klein) as run:
        result = subprocess.run(run.bad_command, env=run.env, capture_output=True, text=True, timeout=120)
        run.settle()
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert "cannot start" in lines[0]
        assert run.paid_calls() == 0 and run.images() == 0
