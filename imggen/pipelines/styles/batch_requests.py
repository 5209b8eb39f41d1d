"""What batch mode sends: one request line per image, grouped into batches inside the API's limits.

Each task becomes a ``/v1/images/generations`` request line whose ``custom_id`` is the task key
and whose body is exactly what the synchronous mode sends, so both modes draw the same images
with the same provenance. Lines are grouped into batches of at most ``batch_size`` requests and
the registry's per-file limits (50,000 requests, 200 MB). The price of a batch line is the
synchronous estimate times the registry's batch multiplier; the budget caps what is submitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator

from imggen.backends.openai_batch import request_line
from imggen.backends.openai_images import request_params
from imggen.backends.openai_models import batch_terms
from imggen.engine.tasks import Task

if TYPE_CHECKING:
    from .plan import StylePlan


@dataclass
class RequestGroup:
    """The request lines of one batch to be."""

    tasks: list[Task]
    data: bytearray
    est_cost: float = 0.0


def request_body(plan: "StylePlan", prompt: str) -> dict:
    """The Images API body of one image, as the synchronous mode sends it. A dall-e model is asked for
    base64 (GPT image models always answer so): its URL lives 60 minutes, and a batch may be
    collected later than that, when an expired URL would mean buying the image again."""
    params = plan.image_params
    body = {"prompt": prompt, **request_params(plan.spec.id, params["size"], params["quality"], params["extra"])}
    if not plan.spec.is_gpt_image:
        body["response_format"] = "b64_json"
    return body


def batch_price(task: Task) -> float:
    """A task's estimated cost through the Batch API."""
    return task.cost * batch_terms().price_multiplier


def group_requests(plan: "StylePlan", tasks: Iterable[Task], *, room: float | None = None) -> Iterator[RequestGroup]:
    """The batches ``tasks`` fill, in order, within the size limits; with ``room`` (US dollars),
    grouping stops before the first task whose batch price would no longer fit."""
    terms = batch_terms()
    most = min(plan.request.batch_size or terms.max_requests_per_file, terms.max_requests_per_file)
    group, spent = RequestGroup([], bytearray()), 0.0
    for task in tasks:
        if room is not None and spent + batch_price(task) > room + 1e-9:
            break
        line = request_line(task.key, request_body(plan, task.payload["prompt"]))
        if group.tasks and (len(group.tasks) >= most or len(group.data) + len(line) > terms.max_input_file_bytes):
            yield group
            group = RequestGroup([], bytearray())
        group.tasks.append(task)
        group.data += line
        group.est_cost += batch_price(task)
        spent += batch_price(task)
    if group.tasks:
        yield group


def describe_batch_price(plan: "StylePlan") -> list[str]:
    """The dry run's batch lines: the price at the batch multiplier, and what a budget lets through."""
    terms = batch_terms()
    if not plan.cost_known:
        return ["batch price: unknown (no published price)"]
    total = sum(batch_price(task) for task in plan.tasks)
    lines = [f"batch price: at most ${total:.2f} for all {len(plan.tasks)} images "
             f"({terms.price_multiplier:g} x the synchronous price; {terms.price_source})"]
    budget = plan.request.budget
    if budget is not None:
        fitting = sum(len(group.tasks) for group in group_requests(plan, plan.tasks, room=budget))
        lines.append(f"budget ${budget:.2f}: {fitting} of {len(plan.tasks)} images fit at the batch price")
    return lines
