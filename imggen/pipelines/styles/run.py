"""The style matrix from plan to finished run: every sample of a prompt set drawn in every style.

:func:`~imggen.pipelines.styles.plan.plan_styles` checks a request into a plan; :func:`run_styles`
runs it through the engine (which decides every retry and wait: :mod:`imggen.engine.retry`), each
image requested by a drawer (:mod:`~imggen.pipelines.styles.drawers`) and written by
:mod:`~imggen.pipelines.styles.work`, or (``mode="batch"``) through OpenAI's Batch API with
:mod:`~imggen.pipelines.styles.batch`. The CLI (``imggen styles``) and the notebook
(``notebooks/01_style_matrix.ipynb``) both call these. File places are in
:mod:`~imggen.pipelines.styles.layout`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from imggen.backends.openai_images import OpenAIImageBackend
from imggen.engine.announcer import Announcer
from imggen.engine.control import RunControl
from imggen.engine.errors import CannotStart, starting
from imggen.engine.events import Reporter
from imggen.engine.job import JobFiles, run_job
from imggen.engine.runner import RateLimit, RunnerConfig, RunSummary
from imggen.engine.stats import unpriced_images
from imggen.literal import printable
from imggen.settings import credential

from .batch import run_styles_batch
from .drawers import Drawer, Flux2Drawer, OpenAIDrawer
from .inputs import InputProblem
from .layout import STATE_FILE, STATS_FILE, made_for, paid_cost, resolve, write_metadata
from .plan import StylePlan, StyleRequest, plan_styles
from .work import StyleWork


@dataclass
class StylesResult:
    """How a style-matrix run ended (``summary``) and the plan it ran."""

    summary: RunSummary
    plan: StylePlan


def openai_api_key() -> str:
    """The OpenAI key (environment or ``.env``); CannotStart when there is none."""
    key = credential("openai_api_key")
    if key is None:
        raise CannotStart("no OpenAI API key: set OPENAI_API_KEY in the environment or in .env "
                          "(or draw locally with --backend flux2 --flux_ckpt PATH)")
    return key


def open_drawer(plan: StylePlan, announcer: Announcer) -> Drawer:
    """What draws the plan's images: the local FLUX.2 klein model (its worker says how loading goes
    through ``announcer``), or the OpenAI model the plan names."""
    request = plan.request
    if plan.spec is None:
        with starting():  # not a checkpoint
            return Flux2Drawer.open(request.flux_ckpt, size=request.size, steps=request.flux_steps,
                                    on_status=announcer.say)
    backend = OpenAIImageBackend(api_key=openai_api_key(), allow_retired=request.allow_retired,
                                 timeout_s=request.request_timeout_s)
    params = plan.image_params
    return OpenAIDrawer(backend, plan.spec, params["size"], params["quality"], params["extra"])


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
) -> StylesResult:
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
    return StylesResult(summary, plan)


async def _run_plan(plan: StylePlan, control: RunControl | None, reporters: Sequence[Reporter],
                    handle_signals: bool) -> RunSummary:
    request = plan.request

    def paid_for(task) -> float:  # what an image on disk was billed: its PNG says so
        return paid_cost(resolve(request.output, task.outputs[0]))

    if request.mode == "batch":
        return await run_styles_batch(plan, api_key=openai_api_key(), files=job_files(request.output),
                                      control=control, reporters=reporters, handle_signals=handle_signals,
                                      paid_for=paid_for)
    announcer = Announcer()
    draw = open_drawer(plan, announcer)
    window = request.limit_window_s
    config = RunnerConfig(
        concurrency=draw.capacity or request.concurrency, budget=request.budget, estimate_basis=plan.estimate_basis,
        limit_window_s=window,
        rate_limit=RateLimit(request.rpm * window / 60, window) if request.rpm else None,
        tokens_per_min=request.tpm, tokens_each=plan.tokens_each,
        retry_failed=request.retry_failed,
    )
    try:
        summary = await run_job(job_files(request.output), plan.tasks, StyleWork(request.output, draw),
                                config=config, control=control, reporters=reporters, handle_signals=handle_signals,
                                outputs_valid=lambda task: made_for(request.output, task),
                                paid_for=paid_for,
                                rounds=plan.rounds, announcer=announcer)
    finally:
        await draw.aclose()
    return summary


def read_stats(output: str | os.PathLike) -> dict:
    """The run's ``images/processing_stats.json``."""
    return json.loads((Path(output) / STATS_FILE).read_text(encoding="utf-8"))
