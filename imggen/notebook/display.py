"""What notebooks show of a run: galleries of its images (thumbnails inlined as data URIs) and its stats.

Thumbnails are made with Pillow (a 1024² PNG is a few MB; its thumbnail a few KB) and kept per
file, so a live panel that redraws its gallery never decodes the same image twice.
"""

from __future__ import annotations

import base64
import html
import io
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from PIL import Image

THUMBNAIL_PX = 160


@lru_cache(maxsize=256)
def _thumbnail(path: str, mtime_ns: int, size: int) -> str:
    with Image.open(path) as picture:
        picture.thumbnail((size, size))
        buffer = io.BytesIO()
        picture.convert("RGB").save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnail_uri(path: str | Path, size: int = THUMBNAIL_PX) -> str | None:
    """A JPEG thumbnail of ``path`` as a data URI, or None when it is missing or unreadable."""
    try:
        return _thumbnail(str(path), Path(path).stat().st_mtime_ns, size)
    except (OSError, ValueError):
        return None


def gallery_html(items: Iterable[tuple[str | Path, str]], *, size: int = THUMBNAIL_PX, empty: str = "No images yet.") -> str:
    """A wrapping row of ``(image path, caption)`` figures; captions are text, never markup."""
    cells = []
    for path, caption in items:
        uri = thumbnail_uri(path, size)
        if uri is None:
            continue
        text = html.escape(caption)
        cells.append(
            f'<figure class="imggen-thumb" style="margin:4px;width:{size}px">'
            f'<img src="{uri}" width="{size}" title="{text}" alt="{text}">'
            f'<figcaption style="font-size:11px;overflow-wrap:anywhere">{text}</figcaption></figure>'
        )
    if not cells:
        return f"<p>{html.escape(empty)}</p>"
    return f'<div class="imggen-gallery" style="display:flex;flex-wrap:wrap">{"".join(cells)}</div>'


def stats_html(stats: dict) -> str:
    """A run's stats (a flat dict, as in ``processing_stats.json``) as a two-column table."""
    rows = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(str(name).replace('_', ' '))}</th>"
        f"<td style='text-align:right'>{html.escape(_cell(value))}</td></tr>"
        for name, value in stats.items() if not isinstance(value, (dict, list))
    )
    return f'<table class="imggen-stats-table">{rows}</table>'


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    return "" if value is None else str(value)


class StatsTable:
    """A run's stats for a notebook cell: a table in Jupyter, aligned lines in a saved or headless notebook."""

    def __init__(self, stats: dict) -> None:
        self.stats = stats

    def _repr_html_(self) -> str:
        return stats_html(self.stats)

    def __repr__(self) -> str:
        flat = {name: value for name, value in self.stats.items() if not isinstance(value, (dict, list))}
        width = max((len(name) for name in flat), default=0)
        return "\n".join(f"{name.replace('_', ' '):<{width}}  {value}" for name, value in flat.items())
