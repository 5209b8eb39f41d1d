"""Token prices for a vision model in tests: the registry publishes none for chat models, so a test that
checks dollars gives one model made-up prices for its duration."""

from __future__ import annotations

import pytest

from imggen.backends.openai_models import load_registry

# US dollars per million tokens, made up for the tests (no published figure): image tokens priced apart,
# and dear enough that a few answers show in a two-decimal summary
VISION_TEST_PRICES = {"text_input": 100.0, "cached_input": 25.0, "image_input": 150.0, "output": 400.0}


def price_vision_model(monkeypatch: pytest.MonkeyPatch, model: str, prices: dict[str, float]) -> dict[str, float]:
    """Give ``model`` ``prices`` in the registry until the test ends."""
    monkeypatch.setitem(load_registry()["vision_models"], model, {"token_prices_per_million": prices})
    return prices


def usage_cost(usage: dict, prices: dict[str, float]) -> float:
    """US dollars of one answer's full ``usage`` (as the emulator billed it) at ``prices``."""
    details = usage["prompt_tokens_details"]
    return (details["text_tokens"] * prices["text_input"] + details["image_tokens"] * prices["image_input"]
            + usage["completion_tokens"] * prices["output"]) / 1e6
