"""What one style-matrix task does: draw the sample's text in one style and store it in both places.

The order keeps every paid image exactly once: the PNG is written (atomically) before the task
is marked done, and when a killed run left the by-style copy without its by-dataset link, the
next run only makes the link and calls no backend.
"""

from __future__ import annotations

import os
from pathlib import Path

from imggen.engine.tasks import Outcome, Task
from imggen.storage.provenance import png_with_provenance

from .drawers import Drawer, Picture
from .layout import COST_FIELD, KEY_FIELD, ImagePlace, link_by_dataset, paid_cost, resolve, store_image, stored_for


def place_of(task: Task) -> ImagePlace:
    by_style, by_dataset = task.outputs
    return ImagePlace(task.key, by_style, by_dataset)


class StyleWork:
    """The engine's work function for the style matrix: ``await work(task) -> Outcome``."""

    def __init__(self, root: str | os.PathLike, draw: Drawer) -> None:
        self.root = Path(root)
        self.draw = draw
        self.withdraw_waiting = getattr(draw, "withdraw_waiting", None)  # a local model's queue, on Pause and Stop

    async def __call__(self, task: Task) -> Outcome:
        place = place_of(task)
        if stored_for(self.root, task):
            link_by_dataset(self.root, place)
            stored = resolve(self.root, place.by_style)
            return Outcome(outputs=place.outputs, cost=paid_cost(stored), provenance={"healed": True})
        return store_picture(self.root, task, await self.draw(task.payload["prompt"], task.key))


def store_picture(root: Path, task: Task, picture: Picture) -> Outcome:
    """Write ``picture`` as the task's image with its provenance (both modes store through here);
    the outcome books the picture's cost, or the task's estimate where the price is unknown."""
    place, payload = place_of(task), task.payload
    parameters = picture.provenance["parameters"]
    provenance = {
        "prompt": payload["prompt"],
        "style": payload["style"],
        "dataset": payload["dataset"],
        "sample_id": payload["sample_id"],
        "model": picture.provenance["model"],
        "parameters": parameters,
        "revised_prompt": picture.provenance.get("revised_prompt"),
    }
    cost = picture.cost if picture.cost is not None else task.cost
    png = png_with_provenance(
        picture.png, {name: value for name, value in provenance.items() if value is not None},
        prompt=payload["prompt"], model=provenance["model"], settings=parameters,
        # what it was billed, so a run killed before it booked the image still books what it paid, and
        # the key (with its round) it was made for
        plain={COST_FIELD: repr(float(cost)), KEY_FIELD: task.key},  # exact: a healed image books the same
    )
    store_image(root, place, png)
    provenance = picture.provenance
    if picture.cost is None:  # booked from the estimate, or (no published price) at $0 and said so in the stats
        provenance = {**provenance, "cost_estimated": True}
        if payload.get("price_unknown"):
            provenance["cost_unknown"] = True
    return Outcome(outputs=place.outputs, cost=cost, provenance=provenance, rate=picture.rate)
