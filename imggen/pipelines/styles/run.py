"""The style matrix from request to finished run: every sample of a prompt set drawn in every style.

:class:`StyleRequest` says what to draw and how; :func:`plan_styles` reads and checks the inputs
and the model (a retired model, a size it does not take or, unless ``allow_unpriced``, a missing
price for ``budget`` stop it here, before any request) and returns the task list with its cost
estimate (see :mod:`~imggen.pipelines.styles.estimate`); :func:`run_styles` runs a plan through
the engine, or (``mode="batch"``) through OpenAI's Batch API with
:mod:`~imggen.pipelines.styles.batch`. The CLI (``imggen styles``) and the notebook
(``notebooks/01_style_matrix.ipynb``) both call these three. File places are in
:mod:`~imggen.pipelines.styles.layout`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from imggen.backends.openai_images import OpenAIImageBackend
from imggen.backends.openai_models import (
    DEFAULT_MODEL, ImageModelSpec, ModelUnavailableError, find_problem, get_model,
)
from imggen.engine.concurrency import AUTO
from imggen.engine.control import RunControl
from imggen.engine.errors import CannotStart, TaskError
from imggen.engine.events import Reporter
from imggen.engine.job import JobFiles, run_job
from imggen.engine.ledger import recorded_rounds
from imggen.engine.rounds import Round, choose_round, round_key
from imggen.engine.runner import RateLimit, RunnerConfig, RunSummary
from imggen.engine.stats import unpriced_images
from imggen.engine.tasks import Task
from imggen.literal import printable
from imggen.settings import load_settings

from .batch import run_styles_batch
from .batch_requests import describe_batch_price
from .estimate import CostEstimate
from .generators import Flux2Generator, Generator, OpenAIGenerator
from .inputs import (
    InputError, InputProblem, PromptRecord, Style, choose_styles, load_prompts, load_styles, select_records,
)
from .layout import STATE_FILE, STATS_FILE, image_place, made_for, made_key, paid_cost, resolve, write_metadata
from .output_settings import output_settings
from .work import StyleWork

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

    @property
    def rounds(self) -> dict[str, Round]:
        return {SCOPE: self.round}

    @property
    def estimated_cost(self) -> float | None:
        """The estimate in US dollars (see ``estimate_basis``), or None where the model has no published price."""
        return sum(task.cost for task in self.tasks) if self.cost_known else None

    @property
    def model_name(self) -> str:
        return self.spec.id if self.spec else f"FLUX.2 klein ({Path(self.request.flux_ckpt).name})"


# -- planning ----------------------------------------------------------------------------------
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
    if request.backend == "flux2" and not request.flux_ckpt:
        raise CannotStart("the flux2 backend needs a checkpoint folder: --flux_ckpt PATH")
    if request.concurrency != AUTO and not (isinstance(request.concurrency, int) and request.concurrency >= 1):
        raise CannotStart(f"concurrency must be at least 1 or {AUTO!r}")
    if request.request_timeout_s is not None and not request.request_timeout_s > 0:
        raise CannotStart("request-timeout must be a positive number of seconds")
    if request.max_samples is not None and request.max_samples < 1:
        raise CannotStart("max-samples must be at least 1")
    if request.rpm is not None and not request.rpm > 0:
        raise CannotStart("rpm must be more than 0 (leave it out to follow the server's rate-limit headers)")
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
    return StylePlan(request, tasks, records, styles, problems, spec, params, cost_known, basis, this_round)


def describe_plan(plan: StylePlan) -> str:
    """A few lines for people: what will be drawn, what it should cost, what was skipped."""
    output = Path(plan.request.output)
    on_disk = sum(all((output / path).exists() for path in task.outputs)
                  and (plan.round.number == 0 or made_key(output, task.outputs[0]) == task.key) for task in plan.tasks)
    datasets = sorted({record.dataset for record in plan.records})
    cost = plan.estimated_cost
    per_image = f"${cost / len(plan.tasks):.3f}/image" if cost and plan.tasks else ""
    bound = "about" if plan.estimate_basis.startswith("typical") else "at most"
    lines = [
        f"{len(plan.tasks)} images: {len(plan.records)} samples ({', '.join(datasets)}) x {len(plan.styles)} styles "
        f"({', '.join(style.name for style in plan.styles)}) with {plan.model_name}",
        f"already on disk: {on_disk}; to draw: {len(plan.tasks) - on_disk}",
        f"estimated cost: {plan.estimate_basis}; the budget and the cost figures count these images as $0.00"
        if cost is None
        else f"estimated cost: {bound} ${cost:.2f} for all {len(plan.tasks)} images "
             f"({per_image}, {plan.estimate_basis})",
    ]
    if plan.request.mode == "batch":
        lines += describe_batch_price(plan)
    lines += [f"skipped: {problem}" for problem in plan.problems]
    return "\n".join(lines)


# -- running -----------------------------------------------------------------------------------
def openai_api_key() -> str:
    """The OpenAI key from the environment or ``.env``; CannotStart when there is none."""
    key = load_settings().openai_api_key
    if key is None or not key.get_secret_value().strip():
        raise CannotStart("no OpenAI API key: set OPENAI_API_KEY in the environment or in .env "
                          "(or draw locally with --backend flux2 --flux_ckpt PATH)")
    return key.get_secret_value()


async def open_generator(plan: StylePlan) -> Generator:
    request = plan.request
    if plan.spec is None:
        try:
            return await Flux2Generator.load(request.flux_ckpt, size=request.size, steps=request.flux_steps)
        except (FileNotFoundError, ValueError, TaskError) as exc:
            raise CannotStart(str(exc)) from None
    backend = OpenAIImageBackend(api_key=openai_api_key(), base_url=load_settings().openai_base_url,
                                 allow_retired=request.allow_retired, timeout_s=request.request_timeout_s)
    params = plan.image_params
    return OpenAIGenerator(backend, plan.spec, params["size"], params["quality"], params["extra"])


def job_files(output: str | os.PathLike) -> JobFiles:
    """The engine's files in the seed's places, plus the ``metadata.jsonl`` view."""
    root = Path(output)
    return JobFiles(root, state=STATE_FILE, stats=STATS_FILE, extra_views=[lambda ledger: write_metadata(ledger, root)],
                    stats_extra=unpriced_images)


async def run_styles(
    what: StyleRequest | StylePlan,
    *,
    control: RunControl | None = None,
    reporters: Sequence[Reporter] = (),
    handle_signals: bool = False,
    on_problem: Callable[[InputProblem], None] = lambda problem: print(printable(f"skipped: {problem}"), flush=True),
) -> RunSummary:
    """Run the style matrix. Given a request, it is planned first and each skipped record goes to
    ``on_problem``; given a plan (from :func:`plan_styles`), its problems were already shown."""
    if isinstance(what, StyleRequest):
        plan = plan_styles(what)
        for problem in plan.problems:
            on_problem(problem)
    else:
        plan = what
    summary = await _run_plan(plan, control, reporters, handle_signals)
    if not plan.cost_known:  # the money figures count its images as $0.00: say so beside them
        summary = dataclasses.replace(summary, unpriced=f"the images of {plan.spec.id} at an unknown price")
    return summary


async def _run_plan(plan: StylePlan, control: RunControl | None, reporters: Sequence[Reporter],
                    handle_signals: bool) -> RunSummary:
    request = plan.request
    if request.mode == "batch":
        return await run_styles_batch(plan, api_key=openai_api_key(), base_url=load_settings().openai_base_url,
                                      files=job_files(request.output), control=control, reporters=reporters,
                                      handle_signals=handle_signals)
    generate = await open_generator(plan)
    window = request.limit_window_s
    config = RunnerConfig(
        concurrency=request.concurrency, budget=request.budget, estimate_basis=plan.estimate_basis,
        limit_window_s=window,
        rate_limit=RateLimit(request.rpm * window / 60, window) if request.rpm else None,
        retry_failed=request.retry_failed,
    )
    try:
        return await run_job(job_files(request.output), plan.tasks, StyleWork(request.output, generate),
                             config=config, control=control, reporters=reporters, handle_signals=handle_signals,
                             outputs_valid=lambda task: made_for(request.output, task),
                             paid_for=lambda task: paid_cost(resolve(request.output, task.outputs[0])),
                             rounds=plan.rounds)
    finally:
        await generate.aclose()


def read_stats(output: str | os.PathLike) -> dict:
    """The run's ``images/processing_stats.json``."""
    return json.loads((Path(output) / STATS_FILE).read_text(encoding="utf-8"))
