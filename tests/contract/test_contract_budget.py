"""The contract, money: a budget stop. A run given a budget is billed no more than it (what the
provider itself counts), stops with exit 2 and says "budget reached"; a rerun with more budget
finishes the job, paying for nothing twice."""

from __future__ import annotations

import subprocess

import pytest
from run_kinds import KINDS


pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
PAID = ["styles-openai", "trainset-replicate"]


@pytest.mark.parametrize("kind", PAID)
def test_a_budget_caps_what_the_provider_bills_and_a_rerun_goes_on(kind, tmp_path, klein):
    with KINDS[kind](tmp_path, klein) as run:
        budget = round(3.5 * run.unit_usd, 4)
        flags = ["--budget", str(budget), *(["--allow-unpriced"] if kind.startswith("trainset") else [])]
        stopped = subprocess.run([*run.command, *flags], env=run.env, capture_output=True, text=True, timeout=240)
        run.settle()
        assert stopped.returncode == 2 and "budget reached" in stopped.stderr, stopped.stderr
        billed = run.billed_usd()
        assert 0 < billed <= budget + 1e-9, f"billed ${billed} on a ${budget} budget"
        assert run.images() < run.expected

        finished = subprocess.run([*run.command, "--budget", "100", *flags[2:]], env=run.env, capture_output=True,
                                  text=True, timeout=240)
        run.settle()
        assert finished.returncode == 0, finished.stderr
        assert run.images() == run.expected
        if kind.startswith("styles"):  # one paid call per image: none paid twice
            assert run.billed_usd() == pytest.approx(run.expected * run.unit_usd)
