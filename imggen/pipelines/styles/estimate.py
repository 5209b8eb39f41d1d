"""What one style-matrix image is expected to cost, and what that figure rests on.

The figure the budget reserves and the plan prints: the typical billed cost of the images of the
same model, size, quality (and dall-e style) already in the output folder's ledger when there are
any, else the published price, else the worst case from the published token prices. ``basis``
says which, in words, for the plan summary and the budget's message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from imggen.backends.openai_models import ImageModelSpec, estimate_cost, price
from imggen.engine.stats import TypicalCost, typical_cost


@dataclass(frozen=True)
class CostEstimate:
    """The per-image estimate of one model and its parameters (``size``, ``quality``, ``extra``)."""

    spec: ImageModelSpec
    params: dict
    typical: TypicalCost | None = None

    @classmethod
    def for_folder(cls, output: str | os.PathLike, spec: ImageModelSpec, params: dict) -> "CostEstimate":
        """The estimate, taught by what the images already billed in ``output``'s ledger cost."""
        asked = {"model": spec.id, "size": params["size"], "quality": params["quality"], **params["extra"]}
        return cls(spec, params, typical_cost(output, {f"$.parameters.{name}": value for name, value in asked.items()}))

    def per_image(self, prompt: str) -> float | None:
        """US dollars for an image of ``prompt``; None where the model has no published price."""
        spec = self.spec
        image = estimate_cost(spec, self._size, self._quality)
        if image is None:
            return None
        if self.typical is not None:
            return self.typical.per_task
        text_price = spec.token_prices_per_million.get("text_input", 0.0)
        return image + len(prompt.encode("utf-8")) * text_price / 1_000_000  # at most one token per byte

    @property
    def basis(self) -> str:
        spec = self.spec
        if estimate_cost(spec, self._size, self._quality) is None:
            return f"unknown: {spec.id} has no published price"
        if self.typical is not None:
            return f"typical: from {self.typical.count} images already billed in this ledger"
        if price(spec, self._size, self._quality) is not None:
            return f"the published price of {spec.id} at {self._size}, {self._quality} quality"
        return (f"worst case: {spec.id}'s published token prices for the largest image of size {self._size}, "
                f"quality {self._quality}")

    @property
    def _size(self) -> str:
        return self.params["size"] or self.spec.default_size

    @property
    def _quality(self) -> str:
        return self.params["quality"] or self.spec.default_quality
