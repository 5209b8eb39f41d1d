"""What one style-matrix task does: draw the sample's text in one style and store it in both places.

The order keeps every paid image exactly once: the PNG is written (atomically) before the task
is marked done, and when a killed run left the by-style copy without its by-dataset link, the
next run only makes the link and calls no backend.
"""

from __future__ import annotations

import os
from pathlib import Path

from imggen.engine.tasks import Outcome, Task

from .generators import Generator, Picture
from .layout import (
    COST_FIELD, KEY_FIELD, ImagePlace, link_by_dataset, paid_cost, resolve, store_image, stored_for, with_text_chunks,
)


def place_of(task: Task) -> ImagePlace:
    by_style, by_dataset = task.outputs
    return ImagePlace(task.key, by_style, by_dataset)


class StyleWork:
    """The engine's work function for the style matrix: ``await work(task) -> Outcome``."""

    def __init__(self, root: str | os.PathLike, generate: Generator) -> None:
        self.root = Path(root)
        self.generate = generate

    async def __call__(self, task: Task) -> Outcome:
        place = place_of(task)
        if stored_for(self.root, task):
            link_by_dataset(self.root, place)
            stored = resolve(self.root, place.by_style)
            return Outcome(outputs=place.outputs, cost=paid_cost(stored), provenance={"healed": True})
        return store_picture(self.root, task, await self.generate(task.payload["prompt"], task.key))


def store_picture(root: Path, task: Task, picture: Picture) -> Outcome:
    """Write ``picture`` as the task's image with its provenance (both modes store through here);
    the outcome books the picture's cost, or the task's estimate where the price is unknown."""
    place, payload = place_of(task), task.payload
    fields = {
        "prompt": payload["prompt"],
        "style": payload["style"],
        "dataset": payload["dataset"],
        "sample_id": payload["sample_id"],
        "model": picture.provenance["model"],
        "parameters": picture.provenance["parameters"],
        "revised_prompt": picture.provenance.get("revised_prompt"),
        "Software": "imggen",
        KEY_FIELD: task.key,
    }
    cost = picture.cost if picture.cost is not None else task.cost
    fields[COST_FIELD] = f"{cost:.6f}"  # so a run killed before it booked the image still books what it paid
    store_image(root, place, with_text_chunks(picture.png, fields))
    provenance = picture.provenance
    if picture.cost is None:  # booked from the estimate, or (no published price) at $0 and said so in the stats
        provenance = {**provenance, "cost_estimated": True}
        if payload.get("price_unknown"):
            provenance["cost_unknown"] = True
    return Outcome(outputs=place.outputs, cost=cost, provenance=provenance, rate=picture.rate)
