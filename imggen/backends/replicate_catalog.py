"""The Replicate models imggen runs, read from ``imggen/data/replicate_models.json``.

One place for model ids, input schemas (types, allowed values, defaults), prices and the account's
create limit, shared by the Replicate backend (costs), the training set (its pace) and the local
emulator (input validation). Every model states its price: a number of US dollars, or ``"unknown"``
where no confirmed figure exists; a catalog entry with neither is refused when the file is read, so
no model is ever counted at $0.00 by omission.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

FLUX_KONTEXT_PRO = "black-forest-labs/flux-kontext-pro"
TOPAZ_IMAGE_UPSCALE = "topazlabs/image-upscale"
UNKNOWN_PRICE = "unknown"


@dataclass(frozen=True)
class ReplicateModel:
    """One model: its ``owner/name``, input schema and price per prediction (``None`` where unknown)."""

    ref: str
    inputs: dict[str, dict[str, Any]]
    price_usd_per_prediction: float | None
    price_note: str

    @property
    def price_known(self) -> bool:
        return self.price_usd_per_prediction is not None

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
            price_usd_per_prediction=_price(ref, entry.get("price_usd_per_prediction")),
            price_note=entry["price_note"],
        )
        for ref, entry in json.loads(text)["models"].items()
    }


def _price(ref: str, stated: object) -> float | None:
    """The catalog's price of ``ref``: US dollars, or None where it says ``"unknown"``."""
    if stated == UNKNOWN_PRICE:
        return None
    if isinstance(stated, (int, float)) and not isinstance(stated, bool) and stated >= 0:
        return float(stated)
    raise ValueError(f"replicate_models.json: {ref} needs price_usd_per_prediction as US dollars or "
                     f"{UNKNOWN_PRICE!r}, not {stated!r}")
