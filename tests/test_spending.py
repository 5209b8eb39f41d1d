"""The cap a training-set run holds its budget with, over its paid calls: prices committed before a
call is sent, given back when it was not billed, answers counted as they arrive, unknown prices not
counted (a budget with them runs only with --allow-unpriced)."""

from __future__ import annotations

import pytest

from imggen.backends.openai_vision import VisionAnswer
from imggen.engine.errors import BudgetReached
from imggen.engine.spending import SpendingCap
from imggen.backends.replicate_predictions import ReplicatePredictions


def test_a_call_is_refused_when_its_price_would_pass_the_budget_and_allowed_again_after_a_refund():
    cap = SpendingCap(0.10)
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
    cap = SpendingCap(None)
    for _ in range(100):
        cap.reserve("grid", 1.0)
    assert cap.committed == pytest.approx(100.0)


def test_a_vision_answer_counts_against_the_budget_when_it_arrives(tmp_path):
    cap = SpendingCap(0.05)
    book = ReplicatePredictions(tmp_path, cap=cap)
    answer = VisionAnswer("[0, 4, 8]", "gpt-4.1-mini", "chatcmpl-1", {"total_tokens": 900}, 0.02)
    assert book.answers.take("grid-1", answer, lambda text: [0, 4, 8]) == [0, 4, 8]
    unpriced = VisionAnswer("[1]", "gpt-4.1-mini", "chatcmpl-2", None, None)
    book.answers.take("grid-2", unpriced, lambda text: [1])
    assert cap.committed == pytest.approx(0.02)
    with pytest.raises(BudgetReached):
        cap.reserve("grid", 0.04)
    book.close()
