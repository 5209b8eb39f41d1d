"""The style matrix's plan: a request read and checked into one task per (sample, style), with its cost.

:class:`StyleRequest` says what to draw and how; :func:`plan_styles` reads and checks the inputs
and the model (a retired model, a size it does not take or, unless ``allow_unpriced``, a missing
price for ``budget`` stop it here, before any request; so do settings other than the folder's
earlier round, unless ``new_round``) and returns a :class:`StylePlan`: the task list with stable
keys (the seed's file names, from :mod:`~imggen.pipelines.styles.layout`) and the cost estimate
(see :mod:`~imggen.pipelines.styles.estimate`). Nothing is sent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from imggen.backends.flux2 import parse_flux_size, size_problem
from imggen.backends.openai_models import (
    DEFAULT_MODEL, ImageModelSpec, ModelUnavailableError, find_problem, get_model, tokens_per_image,
)
from imggen.engine.concurrency import AUTO
from imggen.engine.errors import CannotStart
from imggen.engine.ledger import recorded_rounds
from imggen.engine.rounds import Round, choose_round, round_key
from imggen.engine.tasks import Task

from .batch_requests import describe_batch_price
from .estimate import CostEstimate
from .inputs import InputError, InputProblem, PromptRecord, Style, choose_styles, load_prompts, load_styles, select_records
from .layout import image_place, made_key
from .output_settings import output_settings

BACKENDS = ("openai", "flux2")
MODES = ("sync", "batch")
DEFAULT_CONCURRENCY = AUTO  # in flight: rate limit x observed latency (see imggen/engine/concurrency.py)
SEED_DALLE_PARAMS = {"size": "1024x1024", "quality": "hd", "style": "vivid"}  # the seed's full-HD DALL-E 3 images
SCOPE = "styles"  # the output folder's one scope of rounds (see imggen/engine/rounds.py)


@dataclass
class StyleRequest:
    """Everything a style-matrix run needs. Paths may be strings."""

    prompts: str | os.PathLike
    output: str | os.PathLike
    styles_file: str | os.PathLike | None = None  # None: the ten packaged styles
    styles: Sequence[str] | None = None  # style names to draw (all when None)
    datasets: Sequence[str] | None = None  # datasets to draw (all when None)
    max_samples: int | None = None  # per dataset
    backend: str = "openai"
    model: str | None = None  # OpenAI image model (default: the registry's current default)
    size: str | None = None  # OpenAI: the model's sizes; flux2: any WIDTHxHEIGHT in multiples of 16
    quality: str | None = None
    dalle_style: str | None = None  # dall-e-3 only: vivid or natural
    allow_retired: bool = False  # rehearse a retired model's contract against a local emulator
    flux_ckpt: str | os.PathLike | None = None
    flux_steps: int | None = None
    rpm: float | None = None  # requests per minute (None: follow the server's rate-limit headers)
    tpm: float | None = None  # the account's tokens per minute, where its headers say none (GPT image models)
    concurrency: int | str = DEFAULT_CONCURRENCY  # requests in flight: a number, or "auto"
    request_timeout_s: float | None = None  # a stalled request is retried after this (None: the model's)
    limit_window_s: float = 60.0  # what the limits count over: a minute (shorter only against an emulator)
    budget: float | None = None  # US dollars; a hard cap for this run
    allow_unpriced: bool = False  # run with a budget although the model has no published price
    retry_failed: bool = False  # also retry images refused before (e.g. by the content policy)
    mode: str = "sync"  # sync: one request per image; batch: OpenAI's Batch API at its batch price
    batch_size: int | None = None  # batch mode: requests per batch (default and most: the API's limit)
    poll_s: float = 30.0  # batch mode: seconds between polls of the open batches
    cancel_batches: bool = False  # batch mode: cancel this folder's open batches, keep what they finished
    new_round: bool = False  # draw every image again, also with other settings than the folder's (a new round)


@dataclass
class StylePlan:
    """A checked request: the tasks to run, the records skipped, and what it should cost."""

    request: StyleRequest
    tasks: list[Task]
    records: list[PromptRecord]
    styles: list[Style]
    problems: list[InputProblem] = field(default_factory=list)
    spec: ImageModelSpec | None = None  # None for the local backend
    image_params: dict = field(default_factory=dict)  # size, quality and the model's extra parameters
    cost_known: bool = True
    estimate_basis: str = "free: drawn on this machine"  # what the per-image figure rests on, in words
    round: Round = Round(0)  # the folder's round these tasks belong to, and its settings
    prompts_read_as: str | None = None  # how a CSV saved other than as comma-separated UTF-8 was read

    @property
    def rounds(self) -> dict[str, Round]:
        return {SCOPE: self.round}

    @property
    def estimated_cost(self) -> float | None:
        """The estimate in US dollars (see ``estimate_basis``), or None where the model has no published price."""
        return sum(task.cost for task in self.tasks) if self.cost_known else None

    @property
    def tokens_each(self) -> float | None:
        """Tokens one image will probably count against a tokens-per-minute limit, until answers say."""
        if self.spec is None:
            return None
        return tokens_per_image(self.spec, self.image_params.get("size"), self.image_params.get("quality"))

    @property
    def model_name(self) -> str:
        return self.spec.id if self.spec else f"FLUX.2 klein ({Path(self.request.flux_ckpt).name})"


def _model_and_params(request: StyleRequest) -> tuple[ImageModelSpec, dict]:
    try:
        spec = get_model(request.model or DEFAULT_MODEL, allow_retired=request.allow_retired)
    except ModelUnavailableError as exc:
        hint = " (--allow-retired rehearses it against a local emulator)" if "shut down" in str(exc) else ""
        raise CannotStart(f"{exc}{hint}") from None
    seed_defaults = SEED_DALLE_PARAMS if spec.family == "dall-e" else {}
    params = {
        "size": request.size or seed_defaults.get("size"),
        "quality": request.quality or seed_defaults.get("quality"),
    }
    extra = {"style": request.dalle_style or seed_defaults["style"]} if spec.family == "dall-e" else {}
    if request.dalle_style and spec.family != "dall-e":
        raise CannotStart(f"--dalle-style applies to dall-e-3 only, not {spec.id}")
    problem = find_problem(spec, size=params["size"], quality=params["quality"], params=extra)
    if problem is not None:
        raise CannotStart(problem.describe(spec.id))
    return spec, {**params, "extra": extra}


def _check_request(request: StyleRequest) -> None:
    if request.backend not in BACKENDS:
        raise CannotStart(f"unknown backend {request.backend!r}; use one of {', '.join(BACKENDS)}")
    if request.backend == "flux2":
        _check_flux2(request)
    if request.concurrency != AUTO and not (isinstance(request.concurrency, int) and request.concurrency >= 1):
        raise CannotStart(f"concurrency must be at least 1 or {AUTO!r}")
    if request.request_timeout_s is not None and not request.request_timeout_s > 0:
        raise CannotStart("request-timeout must be a positive number of seconds")
    if request.max_samples is not None and request.max_samples < 1:
        raise CannotStart("max-samples must be at least 1")
    if request.rpm is not None and not request.rpm > 0:
        raise CannotStart("rpm must be more than 0 (leave it out to follow the server's rate-limit headers)")
    if request.tpm is not None and not request.tpm > 0:
        raise CannotStart("tpm must be more than 0 (leave it out to follow the server's rate-limit headers)")
    if request.budget is not None and not request.budget >= 0:
        raise CannotStart("budget must be 0 or more US dollars")
    if request.mode not in MODES:
        raise CannotStart(f"unknown mode {request.mode!r}; use one of {', '.join(MODES)}")
    if request.mode == "batch" and request.backend != "openai":
        raise CannotStart("batch mode sends requests through OpenAI's Batch API: use --backend openai")
    if request.batch_size is not None and request.batch_size < 1:
        raise CannotStart("batch-size must be at least 1")
    if request.cancel_batches and request.mode != "batch":
        raise CannotStart("--cancel-batches cancels the batches of batch mode: add --mode batch")


def _check_flux2(request: StyleRequest) -> None:
    if not request.flux_ckpt:
        raise CannotStart("the flux2 backend needs a checkpoint folder: --flux_ckpt PATH")
    try:
        width, height = parse_flux_size(request.size)
    except ValueError as exc:
        raise CannotStart(str(exc)) from None
    problem = size_problem(height, width)
    if problem:
        raise CannotStart(problem)


def plan_styles(request: StyleRequest) -> StylePlan:
    """Read and check the inputs and the model; one task per (sample, style). Sends nothing."""
    _check_request(request)
    spec, params = _model_and_params(request) if request.backend == "openai" else (None, {})
    try:
        prompt_set = load_prompts(request.prompts)
        all_styles, style_problems = load_styles(request.styles_file)
        styles = choose_styles(all_styles, request.styles)
    except InputError as exc:
        raise CannotStart(str(exc)) from None
    records = select_records(prompt_set.records, datasets=request.datasets, max_samples=request.max_samples)
    this_round = choose_round(str(request.output), recorded_rounds(request.output).get(SCOPE),
                              output_settings(request, spec, params, styles), new_round=request.new_round)
    problems = [*prompt_set.problems, *style_problems]
    if not records:
        found = sorted({record.dataset for record in prompt_set.records})
        wanted = f" of dataset(s) {', '.join(request.datasets)}" if request.datasets else ""
        listed = "".join(f"\n  {problem}" for problem in problems)
        raise CannotStart(f"{request.prompts}: no usable record{wanted}; datasets found: {', '.join(found) or 'none'}"
                          f"{listed}")
    tasks, owners, cost_known = [], {}, True
    model_name = spec.id if spec else Path(request.flux_ckpt).name
    estimate = CostEstimate.for_folder(request.output, spec, params) if spec is not None else None
    for record in records:
        for style in styles:
            prompt = style.prompt(record.text)
            if spec is not None and len(prompt) > spec.max_prompt_chars:
                problems.append(InputProblem(
                    str(request.prompts), record.where,
                    f"style {style.name!r}: the prompt has {len(prompt)} characters; "
                    f"{spec.id} takes at most {spec.max_prompt_chars}"))
                continue
            place = image_place(record.dataset, record.sample_id, style.name)
            if place.key in owners:
                problems.append(InputProblem(str(request.prompts), record.where, f"its file name {place.key}.png "
                                             f"is already used by {owners[place.key]}; skipped"))
                continue
            owners[place.key] = record.where
            cost = estimate.per_image(prompt) if estimate is not None else 0.0
            cost_known = cost_known and cost is not None
            payload = {"dataset": record.dataset, "sample_id": record.sample_id, "style": style.name,
                       "text": record.text, "prompt": prompt, "model": model_name,
                       **({"price_unknown": True} if cost is None else {})}
            tasks.append(Task(round_key(place.key, this_round.number), payload, outputs=place.outputs,
                              cost=cost or 0.0))
    basis = estimate.basis if estimate is not None else StylePlan.estimate_basis
    if not cost_known:
        if request.budget is not None and not request.allow_unpriced:
            raise CannotStart(f"no published price for {spec.id}, so --budget cannot cap it; choose a model with "
                              "a price, run without a budget, or add --allow-unpriced to run with it uncapped")
    return StylePlan(request, tasks, records, styles, problems, spec, params, cost_known, basis, this_round,
                     prompt_set.read_as)


def describe_plan(plan: StylePlan) -> str:
    """A few lines for people: what will be drawn, what it should cost, what was skipped."""
    output = Path(plan.request.output)
    to_draw = [task for task in plan.tasks
               if not (all((output / path).exists() for path in task.outputs)
                       and (plan.round.number == 0 or made_key(output, task.outputs[0]) == task.key))]
    datasets = sorted({record.dataset for record in plan.records})
    cost = sum(task.cost for task in to_draw) if plan.cost_known else None
    per_image = f"${cost / len(to_draw):.3f}/image, " if cost and to_draw else ""
    bound = "about" if plan.estimate_basis.startswith("typical") else "at most"
    which = f"all {len(plan.tasks)} images" if len(to_draw) == len(plan.tasks) else \
        f"the {len(to_draw)} images left of {len(plan.tasks)}"
    lines = [
        f"{_count(len(plan.tasks), 'image')}: {_count(len(plan.records), 'sample')} ({', '.join(datasets)}) x "
        f"{_count(len(plan.styles), 'style')} ({', '.join(style.name for style in plan.styles)}) with {plan.model_name}",
        *([f"prompts read as {plan.prompts_read_as} (save as \"CSV UTF-8\" to be sure)"] if plan.prompts_read_as else []),
        f"already on disk: {len(plan.tasks) - len(to_draw)}; to draw: {len(to_draw)}",
        f"estimated cost: {plan.estimate_basis}; the budget and the cost figures count these images as $0.00"
        if cost is None
        else f"estimated cost: {bound} ${cost:.2f} for {which} ({per_image}{plan.estimate_basis})",
    ]
    if plan.request.mode == "batch":
        lines += describe_batch_price(plan)
    lines += [f"skipped: {problem}" for problem in plan.problems]
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
