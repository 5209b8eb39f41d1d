"""The Replicate models imggen runs, read from ``imggen/data/replicate_models.json``.

One place for model ids, input schemas (types, allowed values, defaults), prices and the account's
create limit, shared by the Replicate backend (costs), the training set (its pace) and the local
emulator (input validation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

FLUX_KONTEXT_PRO = "black-forest-labs/flux-kontext-pro"
TOPAZ_IMAGE_UPSCALE = "topazlabs/image-upscale"


@dataclass(frozen=True)
class ReplicateModel:
    """One model: its ``owner/name``, input schema and price per prediction (``None`` where unknown)."""

    ref: str
    inputs: dict[str, dict[str, Any]]
    price_usd_per_prediction: float | None
    price_note: str

    @property
    def owner(self) -> str:
        return self.ref.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.ref.split("/", 1)[1]

    def input_defaults(self) -> dict[str, Any]:
        """The documented default of every input that has one."""
        return {key: spec["default"] for key, spec in self.inputs.items() if "default" in spec}


@lru_cache(maxsize=1)
def replicate_create_limit_per_min() -> float:
    """Prediction creates Replicate allows an account per minute, over all models (its documented default)."""
    text = resources.files("imggen").joinpath("data", "replicate_models.json").read_text(encoding="utf-8")
    return float(json.loads(text)["create_limit_per_min"])


@lru_cache(maxsize=1)
def replicate_models() -> dict[str, ReplicateModel]:
    """Every known model by ``owner/name``."""
    text = resources.files("imggen").joinpath("data", "replicate_models.json").read_text(encoding="utf-8")
    return {
        ref: ReplicateModel(
            ref=ref,
            inputs=entry["inputs"],
            price_usd_per_prediction=entry["price_usd_per_prediction"],
            price_note=entry["price_note"],
        )
        for ref, entry in json.loads(text)["models"].items()
    }
