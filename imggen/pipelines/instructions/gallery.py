"""A run's first images with their captions (dataset, question, instruction), for a notebook's gallery."""

from __future__ import annotations

from pathlib import Path

from .run import InstructionsResult


def captioned_images(result: InstructionsResult, limit: int = 8) -> list[tuple[Path, str]]:
    """The first ``limit`` generated images of a run as (path, caption), in input order; the
    notebook draws them with :func:`imggen.notebook.gallery_html`."""
    images = []
    for group, entries in result.plan.groups.items():
        for entry in entries:
            if entry.question is None:
                continue
            for index, instruction in enumerate(entry.question.instructions):
                path = result.plan.root / group.image_path(entry.question_id, index)
                if len(images) == limit:
                    return images
                if path.is_file():
                    images.append((path, f"{group.dataset} / {entry.question_id} / img_{index}: {instruction}"))
    return images
