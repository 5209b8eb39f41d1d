"""Reading the user's text files as people save them: UTF-8 with or without a byte-order mark.

Excel and Notepad start a UTF-8 file with a BOM; a JSON, JSONL or CSV reader that does not expect
it refuses the first record or the header row. Every pipeline reads its input files here:
:func:`read_document` for a whole JSON document, :func:`numbered_lines` for JSONL (an undecodable
byte spoils its own line only, which the caller reports as one bad record with its line number),
:func:`csv_rows` for CSV (a row with an undecodable byte is a bad row, the rest are read).
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

BOM = codecs.BOM_UTF8


@dataclass(frozen=True)
class TextLine:
    """One line of a file: its 1-based number and its text, or why it could not be decoded."""

    number: int
    text: str
    undecodable: str | None = None  # e.g. "not UTF-8 (byte 0xff at column 12)"


def read_document(path: str | os.PathLike) -> str:
    """A whole file as text, without its BOM. Raises OSError or UnicodeDecodeError."""
    return Path(path).read_bytes().decode("utf-8-sig")


def _decoded(raw: bytes, number: int) -> TextLine:
    try:
        return TextLine(number, raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        return TextLine(number, "", f"not UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1})")


def numbered_lines(path: str | os.PathLike) -> list[TextLine]:
    """Every line of a file (without its line ending), each decoded on its own. Raises OSError."""
    data = Path(path).read_bytes()
    if data.startswith(BOM):
        data = data[len(BOM):]
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [_decoded(raw.rstrip(b"\r"), number) for number, raw in enumerate(lines, start=1)]


@dataclass(frozen=True)
class CsvRow:
    line: int  # the line the row ends on, as csv counts
    values: dict[str, str]
    undecodable: str | None = None


def csv_rows(path: str | os.PathLike) -> tuple[list[str], Iterator[CsvRow]]:
    """A CSV file's header row and its rows as dicts. Raises OSError.

    Bytes that are not UTF-8 are kept as lone surrogates while the file is split into rows, so
    only the rows holding them come back with ``undecodable`` set."""
    text = Path(path).read_bytes().decode("utf-8-sig", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [_clean(name) for name in (reader.fieldnames or [])]

    def rows() -> Iterator[CsvRow]:
        for row in reader:
            values = {name: value for name, value in row.items() if name is not None and isinstance(value, str)}
            broken = next((value for value in values.values() if value != _clean(value)), None)
            if broken is not None:
                yield CsvRow(reader.line_num, {}, "not UTF-8 (an undecodable byte in this row)")
            else:
                yield CsvRow(reader.line_num, {_clean(name): value for name, value in values.items()})

    return columns, rows()


def _clean(text: str) -> str:
    """``text`` without the lone surrogates that stand for undecodable bytes."""
    return text.encode("utf-8", errors="ignore").decode("utf-8")
