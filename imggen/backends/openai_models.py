"""The OpenAI image model registry: which models exist today, what each accepts, what it costs.

The facts live in ``imggen/data/openai_models.json`` (sizes, qualities, extra parameters, output
kind, prices, shutdown dates and replacements, each with its source). This module loads them and
answers three questions: may this model be used today (:func:`get_model`), is this request valid
for it (:func:`find_problem`), and what does an image cost
(:func:`price` where published, :func:`cost_from_usage` after the fact, :func:`estimate_cost`
before it, for budgets). :func:`batch_terms` gives the Batch API's discount and limits.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Mapping

CUSTOM_SIZE = "custom"  # marks models that accept any WIDTHxHEIGHT within the registry's rule
UNKNOWN_PRICE = "unknown"  # what a model with no published price says in the registry


@functools.lru_cache(maxsize=1)
def load_registry() -> dict[str, Any]:
    """The parsed registry file shipped inside the package."""
    text = resources.files("imggen").joinpath("data/openai_models.json").read_text(encoding="utf-8")
    return json.loads(text)


DEFAULT_MODEL: str = load_registry()["default_model"]
DEFAULT_VISION_MODEL: str = load_registry()["default_vision_model"]


class ModelUnavailableError(ValueError):
    """The model id is unknown, or the model has been shut down."""


@dataclass(frozen=True)
class RequestProblem:
    """One parameter a model does not accept, with what it would accept instead."""

    param: str
    value: Any
    allowed: tuple[str, ...]

    def describe(self, model_id: str) -> str:
        return f"{model_id} does not accept {self.param}={self.value!r}; allowed: {', '.join(self.allowed)}"


@dataclass(frozen=True)
class ImageModelSpec:
    """What one image model accepts and returns, as of the day it was looked up."""

    id: str
    family: str  # "gpt-image" or "dall-e"
    status: str  # "current", "legacy" (shutdown announced) or "retired"
    sizes: tuple[str, ...]  # may contain CUSTOM_SIZE
    qualities: tuple[str, ...]
    params: Mapping[str, tuple[str, ...]]
    output: str  # "b64_json" or "url": what the model returns by default
    max_n: int
    max_prompt_chars: int
    default_size: str = "auto"
    default_quality: str = "auto"
    shutdown: dt.date | None = None
    replacements: tuple[str, ...] = ()
    price_per_image: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    token_prices_per_million: Mapping[str, float] = field(default_factory=dict)
    request_timeout_s: float = 120.0  # an answer slower than this is a stall (the registry's per family)
    note: str = ""

    @property
    def is_gpt_image(self) -> bool:
        return self.family == "gpt-image"

    @property
    def price_known(self) -> bool:
        """Whether an image's cost can be known: a published table or token prices (else ``"price": "unknown"``)."""
        return bool(self.price_per_image or self.token_prices_per_million)


def _status_on(entry: Mapping[str, Any], today: dt.date) -> str:
    shutdown = entry.get("shutdown")
    if shutdown is None:
        return "current"
    return "retired" if dt.date.fromisoformat(shutdown) <= today else "legacy"


def _spec_from_entry(model_id: str, entry: Mapping[str, Any], today: dt.date) -> ImageModelSpec:
    shutdown = entry.get("shutdown")
    priced = bool(entry.get("price_per_image") or entry.get("token_prices_per_million"))
    if priced == (entry.get("price") == UNKNOWN_PRICE):
        raise ValueError(f"openai_models.json: {model_id} needs price_per_image or token_prices_per_million, "
                         f"or \"price\": {UNKNOWN_PRICE!r} (and not both)")
    return ImageModelSpec(
        id=model_id,
        family=entry["family"],
        status=_status_on(entry, today),
        sizes=tuple(entry["sizes"]),
        qualities=tuple(entry["qualities"]),
        params={name: tuple(values) for name, values in entry.get("params", {}).items()},
        output=entry["output"],
        max_n=entry["max_n"],
        max_prompt_chars=entry["max_prompt_chars"],
        default_size=entry.get("default_size", "auto"),
        default_quality=entry.get("default_quality", "auto"),
        shutdown=dt.date.fromisoformat(shutdown) if shutdown else None,
        replacements=tuple(entry.get("replacements", ())),
        price_per_image=entry.get("price_per_image", {}),
        token_prices_per_million=entry.get("token_prices_per_million", {}),
        request_timeout_s=float(load_registry()["request_timeout_s"][entry["family"]]),
        note=entry.get("note", ""),
    )


def model_ids() -> list[str]:
    """Every model id the registry knows, snapshots included."""
    return sorted(load_registry()["models"])


def get_model(model_id: str, today: dt.date | None = None, *, allow_retired: bool = False) -> ImageModelSpec:
    """The spec of ``model_id`` on ``today`` (default: the real today).

    Raises :class:`ModelUnavailableError` (a ``ValueError``) for an unknown id, and for a model
    shut down on or before ``today`` unless ``allow_retired`` (used to rehearse a legacy contract
    against the local emulator). The message names the replacements.
    """
    models = load_registry()["models"]
    entry = models.get(model_id)
    if entry is None:
        current = [m for m, e in models.items() if "snapshot_of" not in e and "shutdown" not in e]
        raise ModelUnavailableError(
            f"unknown OpenAI image model {model_id!r}; current models: {', '.join(sorted(current))}"
        )
    entry = models[entry["snapshot_of"]] if "snapshot_of" in entry else entry
    spec = _spec_from_entry(model_id, entry, today or dt.date.today())
    if spec.status == "retired" and not allow_retired:
        raise ModelUnavailableError(
            f"OpenAI image model {model_id!r} was shut down on {spec.shutdown.isoformat()}; "
            f"use {' or '.join(spec.replacements)} instead"
        )
    return spec


def parse_size(size: str) -> tuple[int, int] | None:
    """``"1536x1024"`` → ``(1536, 1024)``; None for anything that is not WIDTHxHEIGHT."""
    width, sep, height = size.partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        return None
    return int(width), int(height)


def _custom_size_ok(size: str) -> bool:
    rule = load_registry()["custom_size_rule"]
    dims = parse_size(size)
    if dims is None or min(dims) <= 0:
        return False
    long_edge, short_edge = max(dims), min(dims)
    return (
        all(d % rule["multiple_of"] == 0 for d in dims)
        and long_edge / short_edge <= rule["max_aspect_ratio"]
        and long_edge <= rule["max_long_edge"]
        and short_edge <= rule["max_short_edge"]
    )


def _allowed_sizes(spec: ImageModelSpec) -> tuple[str, ...]:
    listed = tuple(s for s in spec.sizes if s != CUSTOM_SIZE)
    if CUSTOM_SIZE in spec.sizes:
        return (*listed, *load_registry()["standard_sizes"], "any WxH (multiples of 16, 1:3..3:1, up to 3840x2160)")
    return listed


def find_problem(
    spec: ImageModelSpec, *, size: str | None = None, quality: str | None = None, n: int = 1,
    params: Mapping[str, Any] | None = None,
) -> RequestProblem | None:
    """The first parameter ``spec`` does not accept, or None when the request is valid."""
    if size is not None and size not in spec.sizes and not (CUSTOM_SIZE in spec.sizes and _custom_size_ok(size)):
        return RequestProblem("size", size, _allowed_sizes(spec))
    if quality is not None and quality not in spec.qualities:
        return RequestProblem("quality", quality, spec.qualities)
    if not 1 <= n <= spec.max_n:
        return RequestProblem("n", n, (f"1..{spec.max_n}",))
    for name, value in (params or {}).items():
        if name == "output_compression":
            if not (spec.is_gpt_image and isinstance(value, int) and 0 <= value <= 100):
                return RequestProblem(name, value, ("an integer 0..100 (GPT image models only)",))
        elif name not in spec.params:
            return RequestProblem(name, value, ("(not supported by this model)",))
        elif value not in spec.params[name]:
            return RequestProblem(name, value, spec.params[name])
    return None


def price(model: str | ImageModelSpec, size: str, quality: str) -> float | None:
    """US dollars for one image of ``size`` and ``quality``, or None where no price is published
    (see the model's ``note``) or the size/quality is ``auto`` and so not known in advance."""
    spec = model if isinstance(model, ImageModelSpec) else get_model(model, allow_retired=True)
    return spec.price_per_image.get(quality, {}).get(size)


def cost_from_usage(spec: ImageModelSpec, usage: Mapping[str, Any] | None) -> float | None:
    """US dollars from a response's token ``usage`` and the model's token prices, if both exist."""
    prices = spec.token_prices_per_million
    if not usage or not prices:
        return None
    details = usage.get("input_tokens_details") or {}
    text_in = details.get("text_tokens", usage.get("input_tokens", 0))
    image_in = details.get("image_tokens", 0)
    return (
        text_in * prices.get("text_input", 0.0)
        + image_in * prices.get("image_input", 0.0)
        + usage.get("output_tokens", 0) * prices.get("image_output", 0.0)
    ) / 1_000_000


def output_tokens(quality: str, width: int, height: int) -> int:
    """Output tokens of one image by gpt-image-1's published table: exact for its sizes, scaled by
    pixel area for others; qualities above ``high`` (and ``auto``) count as ``high``."""
    table = load_registry()["gpt_image_1_output_tokens"]
    by_size = table.get(quality, table["high"])
    return by_size.get(f"{width}x{height}") or round(by_size["1024x1024"] * width * height / (1024 * 1024))


def tokens_per_image(spec: ImageModelSpec, size: str | None, quality: str | None) -> int | None:
    """The tokens one image of a GPT image model counts (its output, by the published table; ``auto``
    and unset as the dearest), None for a model not billed in tokens."""
    if not spec.is_gpt_image:
        return None
    quality = "high" if quality in (None, "auto") else quality
    sizes = load_registry()["standard_sizes"] if size in (None, "auto") else [size]
    return max(output_tokens(quality, *parse_size(each)) for each in sizes)


def estimate_cost(model: str | ImageModelSpec, size: str, quality: str) -> float | None:
    """US dollars one image will probably cost, for budgets: the published price when there is
    one, else the model's output-token price times gpt-image-1's token count for the size and
    quality, else None. ``auto`` counts as high quality and the dearest standard size."""
    spec = model if isinstance(model, ImageModelSpec) else get_model(model, allow_retired=True)
    quality = "high" if quality == "auto" else quality
    if size == "auto":
        estimates = [estimate_cost(spec, standard, quality) for standard in load_registry()["standard_sizes"]]
        return max(estimates) if None not in estimates else None
    published = price(spec, size, quality)
    dims = parse_size(size)
    if published is not None or dims is None or "image_output" not in spec.token_prices_per_million:
        return published
    return output_tokens(quality, *dims) * spec.token_prices_per_million["image_output"] / 1_000_000


@dataclass(frozen=True)
class BatchTerms:
    """The Batch API's price multiplier and per-batch limits, from the registry's ``batch_api`` entry."""

    price_multiplier: float
    price_source: str
    endpoint: str
    completion_window: str
    max_requests_per_file: int
    max_input_file_bytes: int


def batch_terms() -> BatchTerms:
    entry = load_registry()["batch_api"]
    return BatchTerms(
        price_multiplier=entry["price_multiplier"], price_source=entry["price_source"], endpoint=entry["endpoint"],
        completion_window=entry["completion_window"], max_requests_per_file=entry["max_requests_per_file"],
        max_input_file_bytes=entry["max_input_file_bytes"],
    )
