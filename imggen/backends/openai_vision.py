"""What a vision model is asked about a grid, how its answer is read, and what one answer costs.

The tile question and :func:`parse_tile_answer` (the grid judge's contract with the model), the
:class:`VisionAnswer` every vision call returns (text, call id, usage), and :func:`answer_cost`:
US dollars from the answer's ``usage`` and the chat model's token prices in the registry
(``vision_models`` in ``imggen/data/openai_models.json``). A model the registry prices as
``"unknown"`` or does not list, and an answer that came without ``usage``, cost None: unknown,
never $0.00. Nothing here imports the ``openai`` client.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from imggen.backends.openai_models import UNKNOWN_PRICE, load_registry
from imggen.engine.errors import ErrorKind, RateHint, TaskError

JUDGE_QUESTION = (
    "This image is a {grid}x{grid} grid of tiles, numbered 0 to {last} row by row from the top left. "
    "Which tiles are unique, i.e. not a duplicate of any other tile? "
    "Answer with only a JSON list of the unique tile numbers, for example [0, 4]."
)
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*(.*?)\s*```\s*$", re.DOTALL)


def tile_question(grid: int) -> str:
    return JUDGE_QUESTION.format(grid=grid, last=grid * grid - 1)


def parse_tile_answer(text: str, tile_count: int) -> list[int]:
    """The sorted tile indices in a vision model's answer (a JSON list, possibly in a code fence,
    or an object holding one list); TRANSIENT :class:`TaskError` when it is anything else."""
    fenced = _FENCE.match(text)
    try:
        answer = json.loads(fenced.group(1) if fenced else text)
    except json.JSONDecodeError:
        answer = None
    if isinstance(answer, dict) and len(answer) == 1:
        answer = next(iter(answer.values()))
    valid = (
        isinstance(answer, list)
        and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < tile_count for i in answer)
        and len(set(answer)) == len(answer)
    )
    if not valid:
        raise TaskError(ErrorKind.TRANSIENT, f"the vision model did not answer a JSON list of tile numbers "
                        f"0..{tile_count - 1}: {text[:120]!r}")
    return sorted(answer)


@dataclass(frozen=True)
class VisionAnswer:
    """One billed vision answer: its text ("" when the model refused or said nothing) and what it took."""

    text: str
    model: str  # the model asked (the registry's name for it)
    call_id: str  # the completion's id
    usage: dict[str, Any] | None  # as the API reported it; None when the response had none
    cost: float | None  # US dollars; None where unknown (no usage, or no token prices for the model)
    refusal: str | None = None  # the model's refusal, when it gave one instead of an answer
    rate: RateHint | None = None  # the account's chat limits as the answer's headers (and usage) said them


def token_prices(model: str) -> Mapping[str, float] | None:
    """The registry's US dollars per million tokens of vision model ``model``, or None where unknown."""
    entries = load_registry()["vision_models"]
    entry = entries.get(model)
    if entry is not None and "snapshot_of" in entry:
        entry = entries[entry["snapshot_of"]]
    if entry is None or entry.get("price") == UNKNOWN_PRICE:
        return None
    if "token_prices_per_million" not in entry:
        raise ValueError(f"openai_models.json: vision model {model} needs token_prices_per_million "
                         f"or \"price\": {UNKNOWN_PRICE!r}")
    return entry["token_prices_per_million"]


def price_known(model: str) -> bool:
    return token_prices(model) is not None


def answer_cost(model: str, usage: Mapping[str, Any] | None) -> float | None:
    """US dollars of one chat completion from its ``usage`` (``prompt_tokens``, ``completion_tokens``,
    ``prompt_tokens_details.cached_tokens`` / ``image_tokens`` where reported) and the model's prices:
    cached prompt tokens at ``cached_input``, image tokens at ``image_input`` where the model prices
    them apart (else as text input), the rest at ``text_input``, the completion at ``output``."""
    prices = token_prices(model)
    if prices is None or not usage or "prompt_tokens" not in usage or "completion_tokens" not in usage:
        return None
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") or 0
    image = (details.get("image_tokens") or 0) if "image_input" in prices else 0
    text = usage["prompt_tokens"] - cached - image
    return (
        text * prices["text_input"]
        + cached * prices.get("cached_input", prices["text_input"])
        + image * prices.get("image_input", 0.0)
        + usage["completion_tokens"] * prices["output"]
    ) / 1_000_000
