"""Comparison sheets of a style-matrix folder: one sample across every style, side by side.

For each dataset, ``images/sheets/{dataset}.html`` is a table with a row per sample (its id and
text) and a column per style; a drawn cell is a lazy-loaded thumbnail of the stored image (by its
relative path, so the folder can be moved or served as it is), a failed one says so with its
error kind, an unfinished one says ``pending``. ``images/sheets/{dataset}.png`` is the same grid as
one small picture (thumbnails; at most :data:`PNG_MAX_ROWS` samples and :data:`PNG_MAX_STYLES`
styles, with a note saying what was left out). Both are rebuilt from the ledger alone, so they
describe a finished run, a half-finished one, or one still going. Sample text comes from user
files: the HTML escapes it.
"""

from __future__ import annotations

import html
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from PIL import Image, ImageDraw, ImageFont, ImageOps

from imggen.engine.ledger import DONE, LEDGER_NAME, Ledger
from imggen.storage.atomic import atomic_writer
from imggen.storage.paths import safe_name, safe_path

from .layout import IMAGES, resolve

SHEETS = f"{IMAGES}/sheets"
THUMB = 96  # pixels, the longer side of a thumbnail in the PNG sheet
PNG_MAX_ROWS, PNG_MAX_STYLES = 60, 24
LABEL_WIDTH, HEADER_HEIGHT, NOTE_HEIGHT = 220, 28, 22
LABEL_LINES, LABEL_LINE_CHARS = 4, 30  # how much of a sample's text the PNG shows beside its thumbnails


@dataclass(frozen=True)
class Cell:
    """One (sample, style) task as the ledger has it; ``image`` is relative to the output root."""

    status: str  # pending, running, done or failed
    image: str | None = None
    error_kind: str | None = None
    error: str | None = None


@dataclass
class Row:
    sample_id: str
    text: str
    cells: dict[str, Cell] = field(default_factory=dict)  # style -> cell


@dataclass
class Sheet:
    """A dataset's samples by styles, in the order the plan first listed them."""

    dataset: str
    styles: list[str] = field(default_factory=list)
    rows: dict[str, Row] = field(default_factory=dict)  # sample id -> row

    def file(self, suffix: str) -> str:
        """The sheet's file name under ``images/sheets/``: the dataset's folder name plus ``suffix``."""
        return safe_name(safe_name(self.dataset) + suffix)


class NotAStyleMatrix(Exception):
    """The folder holds no style-matrix ledger."""


def read_sheets(root: str | os.PathLike) -> list[Sheet]:
    """Every dataset of the folder's ledger as a :class:`Sheet`; nothing is written."""
    root = Path(root)
    if not (root / LEDGER_NAME).is_file():
        raise NotAStyleMatrix(f"{root} has no {LEDGER_NAME}: not the output folder of a style-matrix run")
    sheets: dict[str, Sheet] = {}
    with Ledger(root) as ledger:
        for record in ledger.records():
            payload = record["payload"]
            if not {"dataset", "sample_id", "style"} <= payload.keys():
                raise NotAStyleMatrix(f"{root}: task {record['key']!r} is not a style-matrix image")
            sheet = sheets.setdefault(payload["dataset"], Sheet(payload["dataset"]))
            style = payload["style"]
            if style not in sheet.styles:
                sheet.styles.append(style)
            row = sheet.rows.setdefault(payload["sample_id"], Row(payload["sample_id"], payload.get("text", "")))
            done = record["status"] == DONE and record["outputs"]
            row.cells[style] = Cell(record["status"], record["outputs"][0] if done else None,
                                    record["error_kind"], record["error"])
    return list(sheets.values())


def write_sheets(root: str | os.PathLike) -> list[Path]:
    """Write the HTML and PNG sheet of every dataset under ``images/sheets/``; returns their paths."""
    written = []
    for sheet in read_sheets(root):
        page, picture = (safe_path(root, *PurePosixPath(SHEETS).parts, sheet.file(end)) for end in (".html", ".png"))
        with atomic_writer(page, "w") as out:
            out.write(sheet_html(sheet))
        with atomic_writer(picture) as out:
            contact_sheet(root, sheet).save(out, format="PNG", optimize=True)
        written += [page, picture]
    return written


# -- HTML --------------------------------------------------------------------------------------
_STYLE = (
    "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
    "th,td{border:1px solid #ddd;padding:4px;vertical-align:top}td.text{max-width:22em;font-size:90%}"
    "img{width:128px;height:128px;object-fit:contain}.failed{background:#fde2e2;color:#900}"
    ".pending,.running{background:#f2f2f2;color:#666}.missing{color:#bbb}"
    ".cell{width:128px;height:128px;display:flex;align-items:center;justify-content:center;text-align:center}"
)


def sheet_html(sheet: Sheet) -> str:
    """The page of one dataset; every text from the inputs or the ledger is escaped."""
    counts = _counts(sheet)
    header = "".join(f"<th>{html.escape(style)}</th>" for style in sheet.styles)
    rows = "".join(
        f"<tr><th>{html.escape(row.sample_id)}</th><td class='text'>{html.escape(row.text)}</td>"
        + "".join(f"<td>{_cell_html(row.cells.get(style))}</td>" for style in sheet.styles) + "</tr>"
        for row in sheet.rows.values()
    )
    title = html.escape(f"{sheet.dataset}: {len(sheet.rows)} samples x {len(sheet.styles)} styles")
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    return (
        f"<!doctype html><meta charset='utf-8'><title>{title}</title><style>{_STYLE}</style>"
        f"<h1>{title}</h1><p>{html.escape(summary)}; contact sheet: "
        f"<a href='{quote(sheet.file('.png'))}'>{html.escape(sheet.file('.png'))}</a></p>"
        f"<table><tr><th>sample</th><th>text</th>{header}</tr>{rows}</table>"
    )


def _cell_html(cell: Cell | None) -> str:
    if cell is None:
        return "<div class='cell missing'>not planned</div>"
    if cell.image:
        source = html.escape(quote(_from_sheets(cell.image)))
        return f"<a href='{source}'><img loading='lazy' src='{source}' alt='{html.escape(cell.image)}'></a>"
    if cell.status == "failed":
        title = html.escape(cell.error or "", quote=True)
        return f"<div class='cell failed' title='{title}'>failed<br>{html.escape(cell.error_kind or '')}</div>"
    return f"<div class='cell {html.escape(cell.status)}'>{html.escape(cell.status)}</div>"


def _from_sheets(image: str) -> str:
    """An image's path relative to ``images/sheets/`` (images are relative to the output root)."""
    return str(PurePosixPath("..", PurePosixPath(image).relative_to(IMAGES)))


def _counts(sheet: Sheet) -> dict[str, int]:
    counts = {"done": 0, "failed": 0, "running": 0, "pending": 0}
    for row in sheet.rows.values():
        for cell in row.cells.values():
            counts[cell.status] = counts.get(cell.status, 0) + 1
    return counts


# -- PNG ---------------------------------------------------------------------------------------
_COLOURS = {"failed": (253, 226, 226), "pending": (238, 238, 238), "running": (238, 238, 238)}


def contact_sheet(root: str | os.PathLike, sheet: Sheet) -> Image.Image:
    """The sheet as one picture, bounded to :data:`PNG_MAX_ROWS` x :data:`PNG_MAX_STYLES` thumbnails."""
    rows = list(sheet.rows.values())[:PNG_MAX_ROWS]
    styles = sheet.styles[:PNG_MAX_STYLES]
    left_out = len(sheet.rows) - len(rows), len(sheet.styles) - len(styles)
    note = NOTE_HEIGHT if any(left_out) else 0
    width = LABEL_WIDTH + THUMB * len(styles)
    picture = Image.new("RGB", (width, HEADER_HEIGHT + THUMB * len(rows) + note), "white")
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=12)
    for column, style in enumerate(styles):
        draw.text((LABEL_WIDTH + column * THUMB + 4, 8), style[:14], fill="black", font=font)
    for number, row in enumerate(rows):
        top = HEADER_HEIGHT + number * THUMB
        draw.text((4, top + 4), row.sample_id[:30], fill="black", font=font)
        lines = textwrap.wrap(row.text, LABEL_LINE_CHARS, max_lines=LABEL_LINES, placeholder=" ...")
        for number_of_line, line in enumerate(lines):
            draw.text((4, top + 22 + 14 * number_of_line), line, fill=(90, 90, 90), font=font)
        for column, style in enumerate(styles):
            _draw_cell(picture, draw, font, root, row.cells.get(style), (LABEL_WIDTH + column * THUMB, top))
    if note:
        hidden = " and ".join(f"{count} more {what}" for count, what in zip(left_out, ("samples", "styles")) if count)
        message = f"{hidden} not shown: see {sheet.file('.html')}"
        draw.text((4, picture.height - NOTE_HEIGHT + 4), message, fill=(150, 0, 0), font=font)
    return picture


def _draw_cell(picture: Image.Image, draw: ImageDraw.ImageDraw, font, root, cell: Cell | None,
               corner: tuple[int, int]) -> None:
    x, y = corner
    box = (x + 2, y + 2, x + THUMB - 3, y + THUMB - 3)
    if cell is not None and cell.image:
        try:
            with Image.open(resolve(root, cell.image)) as image:
                thumbnail = ImageOps.contain(image.convert("RGB"), (THUMB - 4, THUMB - 4))
            picture.paste(thumbnail, (x + (THUMB - thumbnail.width) // 2, y + (THUMB - thumbnail.height) // 2))
            return
        except OSError:
            label = "missing file"
    else:
        label = "not planned" if cell is None else cell.status
    draw.rectangle(box, fill=_COLOURS.get(label, (250, 250, 250)), outline=(210, 210, 210))
    draw.text((x + 8, y + THUMB // 2 - 12), label, fill="black", font=font)
    if cell is not None and cell.status == "failed":
        draw.text((x + 8, y + THUMB // 2 + 4), cell.error_kind or "", fill=(150, 0, 0), font=font)
