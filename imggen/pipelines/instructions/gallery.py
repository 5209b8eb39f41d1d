"""A small HTML grid of a run's images with their instructions, for the notebook."""

from __future__ import annotations

import base64
import html

from .run import InstructionsResult


def gallery_html(result: InstructionsResult, limit: int = 8, *, thumbnail_px: int = 160) -> str:
    """The first ``limit`` generated images of a run, each captioned with its question and instruction."""
    cells = []
    for group, entries in result.plan.groups.items():
        for entry in entries:
            if entry.question is None:
                continue
            for index, instruction in enumerate(entry.question.instructions):
                path = result.plan.root / group.image_path(entry.question_id, index)
                if len(cells) == limit:
                    break
                if not path.is_file():
                    continue
                data = base64.b64encode(path.read_bytes()).decode()
                caption = html.escape(f"{group.dataset} / {entry.question_id} / img_{index}: {instruction}")
                cells.append(
                    f'<figure style="margin:4px;width:{thumbnail_px}px">'
                    f'<img src="data:image/png;base64,{data}" width="{thumbnail_px}" title="{caption}">'
                    f'<figcaption style="font-size:11px">{caption}</figcaption></figure>'
                )
    if not cells:
        return "<p>No images yet.</p>"
    return f'<div style="display:flex;flex-wrap:wrap">{"".join(cells)}</div>'
