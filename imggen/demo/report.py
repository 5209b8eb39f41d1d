"""The demo's HTML report: a contact sheet per pipeline, its stats and cost, links to the style
matrix's comparison sheets, the training images with their captions, and where the outputs are."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Iterable
from urllib.parse import quote

from ..pipelines.styles.sheet import SHEETS
from ..pipelines.trainset.captions import METADATA
from .tour import Stage

THUMBNAILS_PER_PIPELINE = 24
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
_STATS_NAMES = ("processing_stats.json", "stats.json")

NOISE_NOTE = (
    "These images come from a tiny FLUX.2 klein model with random weights, built on this machine so the demo "
    "needs no download: it draws noise. Every file, ledger, stat and resume path is the real one. For real "
    "pictures, point <code>--flux_ckpt</code> (or the notebooks' <code>flux_ckpt</code>) at a FLUX.2 klein "
    "checkpoint, or use the providers: set <code>OPENAI_API_KEY</code> for the style matrix and the GPT judge, "
    "<code>REPLICATE_API_TOKEN</code> for flux-kontext-pro grids and Topaz upscaling, and the AWS variables for S3."
)


def write_report(root: Path, executed: Iterable[tuple[Stage, Path]]) -> Path:
    sections = [_section(root, stage, notebook) for stage, notebook in executed]
    page = (
        "<!doctype html><meta charset='utf-8'><title>imggen demo</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}img{width:96px;height:96px;"
        "object-fit:cover;margin:2px;image-rendering:pixelated}pre{background:#f4f4f4;padding:1em;"
        "overflow:auto}.note{background:#fff6d5;padding:1em;border-radius:4px}figure{display:inline-block;"
        "width:12em;margin:4px;vertical-align:top}figcaption{font-size:small}</style>"
        f"<h1>imggen demo</h1><p class='note'>{NOISE_NOTE}</p>{''.join(sections)}"
    )
    report = root / "report.html"
    report.write_text(page, encoding="utf-8")
    return report


def _section(root: Path, stage: Stage, notebook: Path) -> str:
    folder = root / stage.output
    images = _distinct_images(folder)
    thumbs = "".join(
        f"<img src='{html.escape(str(p.relative_to(root)))}' title='{html.escape(p.name)}'>"
        for p in images[:THUMBNAILS_PER_PIPELINE]
    )
    stats = [p for name in _STATS_NAMES for p in sorted(folder.rglob(name))]
    stats_html = "".join(
        f"<p><code>{html.escape(str(p.relative_to(root)))}</code></p>"
        f"<pre>{html.escape(json.dumps(json.loads(p.read_text()), indent=2))}</pre>"
        for p in stats[:3]
    )
    cost = sum(json.loads(p.read_text()).get("total_cost_usd", 0.0) for p in stats)
    return (
        f"<h2>{html.escape(stage.title)}</h2>"
        f"<p>{len(images)} images in <code>{html.escape(str(folder))}</code>{_shown(len(images))}; cost ${cost:.2f}; "
        f"executed notebook <code>{html.escape(str(notebook))}</code></p>{_sheet_links(root, folder)}{thumbs}"
        f"{_captioned(root, folder)}{stats_html}"
    )


def _shown(count: int) -> str:
    """`` (the first 24 shown)`` when the thumbnails leave some out."""
    return f" (the first {THUMBNAILS_PER_PIPELINE} shown)" if count > THUMBNAILS_PER_PIPELINE else ""


def _sheet_links(root: Path, folder: Path) -> str:
    """Links to the comparison sheets in ``folder`` (one sample across every style), if it has any."""
    pages = sorted((folder / SHEETS).glob("*.html"))
    links = ", ".join(
        f"<a href='{html.escape(quote(str(page.relative_to(root))))}'>{html.escape(page.stem)}</a> "
        f"(<a href='{html.escape(quote(str(page.with_suffix('.png').relative_to(root))))}'>PNG</a>)"
        for page in pages
    )
    return f"<p class='sheets'>Comparison sheets, samples by styles: {links}</p>" if pages else ""


def _captioned(root: Path, folder: Path) -> str:
    """The training images in ``folder`` with their captions, as the caption files beside them say."""
    figures = []
    for metadata in sorted(folder.rglob(METADATA)):
        for line in metadata.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            caption = metadata.parent / Path(row["file_name"]).with_suffix(".txt")
            if caption.is_file() and len(figures) < THUMBNAILS_PER_PIPELINE:
                image = html.escape(quote(str((metadata.parent / row["file_name"]).relative_to(root))))
                text = html.escape(caption.read_text(encoding="utf-8"))
                figures.append(f"<figure><img src='{image}' alt='{text}'><figcaption>{text}</figcaption></figure>")
    if not figures:
        return ""
    return f"<div class='captions'><p>Training images and their captions:</p>{''.join(figures)}</div>"


def _distinct_images(folder: Path) -> list[Path]:
    """Image files under ``folder``, each stored file once (the style matrix hard-links its twins),
    the comparison sheets left out."""
    seen, images = set(), []
    sheets = folder / SHEETS
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and sheets not in path.parents:
            identity = (path.stat().st_dev, path.stat().st_ino)
            if identity not in seen:
                seen.add(identity)
                images.append(path)
    return images
