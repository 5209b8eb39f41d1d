"""The contract, failures for good: a run where some images fail for good (a prompt the provider
refuses, an unreadable input image, a folder where an image is to be written) ends with the same
summary on every kind of run, and exit 1:

    finished: 20/24 done, 4 failed, 0 pending, $0.10 spent
      permanent: 4 (first: ...)
      permanent failures are not tried again; rerun with --retry-failed once their cause is fixed

No failure is told with a traceback. A plain rerun once the cause is fixed tries none of them again (nothing is sent, the same summary);
a rerun with ``--retry-failed`` makes them and finishes, paying only for what had failed.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from run_kinds import KINDS, Run

from imggen.storage.atomic import is_valid_image

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
# the kinds whose images can be made to fail for good from outside (Run.fail_some): all of them so far; a
# kind that cannot (a local model that refuses nothing, storing where nothing can block it) is left out here
FAILABLE = list(KINDS)
HINT = "  permanent failures are not tried again; rerun with --retry-failed once their cause is fixed"


def made(run: Run) -> int:
    return sum(is_valid_image(path) for path in run.image_files())


def assert_failures_summed_up(result: subprocess.CompletedProcess, run: Run, failed: int) -> None:
    """The summary of a run that finished with ``failed`` images failed for good; exit 1."""
    err = result.stderr
    assert result.returncode == 1, err
    done = run.expected - failed
    assert re.search(rf"^finished: {done}/{run.expected} done, {failed} failed, 0 pending, \$\d+\.\d\d spent", err,
                     re.MULTILINE), err
    kinds = re.findall(r"^  (\w+): (\d+) \(first: .+\)$", err, re.MULTILINE)
    assert kinds == [("permanent", str(failed))], err
    assert HINT in err.splitlines(), err
    assert "Traceback" not in err, "a failure the user can fix is told in one line, not a traceback"


@pytest.mark.parametrize("kind", FAILABLE)
def test_failures_for_good_are_summed_up_and_retry_failed_makes_them(kind, tmp_path, klein):
    with KINDS[kind](tmp_path, klein) as run:
        assert run.fail_some is not None, f"{kind} cannot be made to fail from outside: leave it out of FAILABLE"
        fix = run.fail_some()
        first = subprocess.run(run.command, env=run.env, capture_output=True, text=True, timeout=240)
        run.settle()
        failed = run.expected - made(run)
        assert 0 < failed < run.expected, first.stderr
        assert_failures_summed_up(first, run, failed)
        paid = run.paid_calls()

        fix()
        plain = subprocess.run(run.command, env=run.env, capture_output=True, text=True, timeout=240)
        run.settle()
        assert_failures_summed_up(plain, run, failed)
        assert run.paid_calls() == paid, "a failure for good was tried again without --retry-failed"

        retried = subprocess.run([*run.command, "--retry-failed"], env=run.env, capture_output=True, text=True,
                                 timeout=240)
        run.settle()
        assert retried.returncode == 0, retried.stderr
        assert f"finished: {run.expected}/{run.expected} done, 0 failed, 0 pending" in retried.stderr, retried.stderr
        assert made(run) == run.expected
        assert run.paid_calls() - paid <= failed * run.calls_per_task, "paid for more than what had failed"
