"""Reading the user's text files as people save them: UTF-8 with or without a byte-order mark, and
CSV as Excel saves it.

Excel and Notepad start a UTF-8 file with a BOM; a JSON, JSONL or CSV reader that does not expect
it refuses the first record or the header row. Every pipeline reads its input files here:
:func:`read_document` for a whole JSON document, :func:`numbered_lines` for JSONL (an undecodable
byte spoils its own line only, which the caller reports as one bad record with its line number),
:func:`csv_rows` for CSV. Excel's "CSV (Comma delimited)" is Windows-1252, and a European Excel
separates columns with semicolons: a CSV file holding no UTF-8 beyond ASCII but bytes UTF-8 cannot
read is read as Windows-1252 (Latin-1 where a byte has no Windows-1252 meaning), and the separator
is the one of ``,``, ``;`` and tab that splits the header row into most columns. In a file that is
UTF-8 elsewhere, a row with an undecodable byte is a bad row and the rest are read.
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


@dataclass(frozen=True)
class CsvTable:
    columns: list[str]  # the header row
    rows: Iterator[CsvRow]
    read_as: str | None  # how a file saved other than as comma-separated UTF-8 was read, in words


SEPARATORS = {",": "commas", ";": "semicolons", "\t": "tabs"}


def csv_rows(path: str | os.PathLike) -> CsvTable:
    """A CSV file's header row and its rows as dicts (see the module for encodings and separators).
    Raises OSError. In a UTF-8 file, bytes that are not UTF-8 are kept as lone surrogates while the
    file is split into rows, so only the rows holding them come back with ``undecodable`` set."""
    text, legacy = _csv_text(Path(path).read_bytes())
    first_line = text.split("\n", 1)[0]
    separator = max(SEPARATORS, key=lambda sep: (len(next(csv.reader([first_line], delimiter=sep), [])), sep == ","))
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=separator)
    columns = [_clean(name) for name in (reader.fieldnames or [])]
    notes = [note for note in (f"{legacy} text" if legacy else "",
                               f"columns separated by {SEPARATORS[separator]}" if separator != "," else "") if note]

    def rows() -> Iterator[CsvRow]:
        for row in reader:
            values = {name: value for name, value in row.items() if name is not None and isinstance(value, str)}
            broken = next((value for value in values.values() if value != _clean(value)), None)
            if broken is not None:
                yield CsvRow(reader.line_num, {}, "not UTF-8 (an undecodable byte in this row)")
            else:
                yield CsvRow(reader.line_num, {_clean(name): value for name, value in values.items()})

    return CsvTable(columns, rows(), ", ".join(notes) or None)


def _csv_text(data: bytes) -> tuple[str, str | None]:
    """The file's text, and the legacy encoding it was read in, if any: a file with bytes that are
    not UTF-8 and no UTF-8 beyond ASCII is what Excel's "CSV (Comma delimited)" writes."""
    text = data.decode("utf-8-sig", errors="surrogateescape")
    undecodable = any("\udc80" <= char <= "\udcff" for char in text)
    utf8_beyond_ascii = any(char > "\x7f" and not "\udc80" <= char <= "\udcff" for char in text)
    if not undecodable or utf8_beyond_ascii:
        return text, None
    try:
        return data.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError:  # a byte Windows-1252 leaves undefined: Latin-1 defines them all
        return data.decode("latin-1"), "Latin-1"


def _clean(text: str) -> str:
    """``text`` without the lone surrogates that stand for undecodable bytes."""
    return text.encode("utf-8", errors="ignore").decode("utf-8")
