"""A run's one budget: tasks hold their estimates before they start, and waits for those in flight
before it stops; paid calls of tasks without an estimate reserve their prices before they are sent,
given back when not billed, answers counted as they arrive, unknown prices not counted (a budget
with them runs only with --allow-unpriced); both count against the same money."""

from __future__ import annotations

import asyncio

import pytest

from imggen.backends.openai_vision import VisionAnswer
from imggen.engine.budget import Budget
from imggen.engine.errors import BudgetReached
from imggen.backends.replicate_predictions import ReplicatePredictions


def test_a_call_is_refused_when_its_price_would_pass_the_budget_and_allowed_again_after_a_refund():
    cap = Budget(0.10)
    cap.reserve("grid", 0.04)
    cap.reserve("grid", 0.04)
    with pytest.raises(BudgetReached, match=r"spent \$0\.08 of \$0\.10 in this run .* the next grid costs \$0\.04"):
        cap.reserve("grid", 0.04)
    assert cap.committed == pytest.approx(0.08)  # the refused call committed nothing
    cap.refund(0.04)  # one of them was not billed
    cap.reserve("grid", 0.04)
    cap.reserve("upscale", None)  # an unknown price counts nothing
    assert cap.committed == pytest.approx(0.08)


def test_no_budget_caps_nothing():
    cap = Budget(None)
    for _ in range(100):
        cap.reserve("grid", 1.0)
    assert cap.committed == pytest.approx(100.0)


def test_a_vision_answer_counts_against_the_budget_when_it_arrives(tmp_path):
    cap = Budget(0.05)
    book = ReplicatePredictions(tmp_path, cap=cap)
    answer = VisionAnswer("[0, 4, 8]", "gpt-4.1-mini", "chatcmpl-1", {"total_tokens": 900}, 0.02)
    assert book.answers.take("grid-1", answer, lambda text: [0, 4, 8]) == [0, 4, 8]
    unpriced = VisionAnswer("[1]", "gpt-4.1-mini", "chatcmpl-2", None, None)
    book.answers.take("grid-2", unpriced, lambda text: [1])
    assert cap.committed == pytest.approx(0.02)
    with pytest.raises(BudgetReached):
        cap.reserve("grid", 0.04)
    book.close()


async def test_a_task_waits_for_the_estimates_in_flight_before_the_budget_stops():
    budget, spent = Budget(0.10, estimate_basis="the price list"), [0.0]
    assert await budget.hold(0.06, lambda: spent[0], lambda: True)
    waiting = asyncio.ensure_future(budget.hold(0.06, lambda: spent[0], lambda: True))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # 0.06 held and 0.06 more would pass 0.10
    spent[0] = 0.03  # the first task was billed below its estimate
    budget.release(0.06)
    assert await waiting
    spent[0] = 0.09
    budget.release(0.06)
    with pytest.raises(BudgetReached, match=r"spent \$0\.09 of \$0\.10 .* up to \$0\.06 \(the price list\)"):
        await budget.hold(0.06, lambda: spent[0], lambda: True)


async def test_a_wait_ends_when_the_run_does():
    budget = Budget(0.10)
    assert await budget.hold(0.08, lambda: 0.0, lambda: True)
    waiting = asyncio.ensure_future(budget.hold(0.08, lambda: 0.0, lambda: False))
    await asyncio.sleep(0.01)
    budget.release(0.08)
    assert await waiting is False


async def test_calls_reserved_one_by_one_and_task_estimates_are_one_account():
    budget = Budget(0.10)
    budget.reserve("grid", 0.08)
    with pytest.raises(BudgetReached):
        await budget.hold(0.04, lambda: 0.0, lambda: True)
    assert await budget.hold(0.0, lambda: 0.05, lambda: True)  # a task without an estimate starts
    with pytest.raises(BudgetReached):
        budget.reserve("upscale", 0.04)
