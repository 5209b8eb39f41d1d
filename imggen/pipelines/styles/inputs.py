"""The style matrix's inputs: a prompt-set file and a styles file, read and checked record by record.

Prompt set (JSON, JSONL or CSV; the format follows the file's suffix). Every record has:

* ``dataset``: the text's source, e.g. ``wikipedia``, ``asset``, ``simpa``, ``onestop``;
* ``sample_id``: the sample's id within its dataset (a string or an integer; ``"020"`` stays ``"020"``);
* ``text``: the text the images illustrate.

Other fields are ignored. A ``.json`` file holds a list of records, or an object whose
``"samples"`` is that list; a ``.jsonl`` file holds one record per line; a ``.csv`` file has a
header row naming at least the three columns. Files may start with a UTF-8 byte-order mark (as
Excel saves them). A record that breaks these rules, repeats an earlier ``(dataset, sample_id)``
or holds bytes that are not UTF-8 becomes an :class:`InputProblem` naming the file and the record
(JSON) or line (JSONL, CSV); the good records go on. Only a file that cannot be read at all raises
:class:`InputError`.

Styles file (JSON): ``{"styles": {"cartoon": "A cartoon illustration of {text}", ...}}``, one
prompt template per style, in order; ``{text}`` marks where the sample's text goes. The package
ships ten (``imggen/data/styles.json``); copy it to edit or extend them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from imggen.storage.text_files import csv_rows, numbered_lines, read_document

REQUIRED_FIELDS = ("dataset", "sample_id", "text")
TEXT_SLOT = "{text}"
PROMPT_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv")


class InputError(ValueError):
    """An input file that cannot be used at all (unreadable, wrong shape, unknown style asked for)."""


@dataclass(frozen=True)
class InputProblem:
    """One bad record, skipped while the good ones run."""

    file: str
    where: str  # "record 3" (JSON) or "line 7" (JSONL, CSV)
    message: str

    def __str__(self) -> str:
        return f"{self.file}, {self.where}: {self.message}"


@dataclass(frozen=True)
class PromptRecord:
    """One text sample to draw in every style."""

    dataset: str
    sample_id: str
    text: str
    where: str = ""  # where it came from, for messages about it


@dataclass(frozen=True)
class PromptSet:
    records: list[PromptRecord]
    problems: list[InputProblem]
    read_as: str | None = None  # how a CSV saved other than as comma-separated UTF-8 was read


@dataclass(frozen=True)
class Style:
    """A named prompt template; ``{text}`` is replaced by the sample's text."""

    name: str
    template: str

    def prompt(self, text: str) -> str:
        return self.template.replace(TEXT_SLOT, text.strip())


# -- prompt sets -------------------------------------------------------------------------------
def _checked_record(raw: Any, where: str) -> PromptRecord | str:
    """The record, or what is wrong with it."""
    if not isinstance(raw, dict):
        return f"expected an object with {', '.join(REQUIRED_FIELDS)}, got {type(raw).__name__}"
    missing = [name for name in REQUIRED_FIELDS if raw.get(name) in (None, "")]
    if missing:
        return f"missing {', '.join(missing)}"
    dataset, sample_id, text = raw["dataset"], raw["sample_id"], raw["text"]
    if not isinstance(dataset, str) or not dataset.strip():
        return "dataset must be a non-empty string"
    if isinstance(sample_id, bool) or not isinstance(sample_id, (str, int)) or not str(sample_id).strip():
        return "sample_id must be a non-empty string or an integer"
    if not isinstance(text, str) or not text.strip():
        return "text must be a non-empty string"
    return PromptRecord(dataset.strip(), str(sample_id).strip(), text.strip(), where)


def _json_records(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        document = json.loads(read_document(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({exc})") from None
    if isinstance(document, dict) and "samples" in document:
        document = document["samples"]
    if not isinstance(document, list):
        raise InputError(f"{path}: expected a list of records, or an object with a \"samples\" list")
    for index, raw in enumerate(document, start=1):
        yield f"record {index}", raw


def _jsonl_records(path: Path) -> Iterator[tuple[str, Any]]:
    for line in _readable(path, numbered_lines):
        where = f"line {line.number}"
        if line.undecodable:
            yield where, _Unparsable(line.undecodable)
        elif line.text.strip():
            try:
                yield where, json.loads(line.text)
            except json.JSONDecodeError as exc:
                yield where, _Unparsable(f"not valid JSON ({exc.msg})")


def _csv_records(path: Path) -> Iterator[tuple[str, Any]]:
    table = _readable(path, csv_rows)
    missing = [name for name in REQUIRED_FIELDS if name not in table.columns]
    if missing:
        raise InputError(f"{path}: the header row lacks the column(s) {', '.join(missing)} (it reads "
                         f"{', '.join(map(repr, table.columns[:6]))}); save it as \"CSV UTF-8\" with those columns")
    if table.read_as:
        yield "", _ReadAs(table.read_as)
    for row in table.rows:
        yield f"line {row.line}", _Unparsable(row.undecodable) if row.undecodable else row.values


def _readable(path: Path, read):
    try:
        return read(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc})") from None


@dataclass(frozen=True)
class _Unparsable:
    reason: str


@dataclass(frozen=True)
class _ReadAs:
    how: str  # a CSV file saved other than as comma-separated UTF-8, and how it was read


def load_prompts(path: str | os.PathLike) -> PromptSet:
    """Read a prompt-set file; bad or repeated records come back as problems, not exceptions."""
    path = Path(path)
    readers = {".json": _json_records, ".jsonl": _jsonl_records, ".ndjson": _jsonl_records, ".csv": _csv_records}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"{path}: unknown prompt-set format; use one of {', '.join(PROMPT_SUFFIXES)}")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    records: list[PromptRecord] = []
    problems: list[InputProblem] = []
    first_seen: dict[tuple[str, str], str] = {}
    read_as = None
    for where, raw in reader(path):
        if isinstance(raw, _ReadAs):
            read_as = raw.how
            continue
        checked = raw.reason if isinstance(raw, _Unparsable) else _checked_record(raw, where)
        if isinstance(checked, str):
            problems.append(InputProblem(str(path), where, checked))
            continue
        identity = (checked.dataset, checked.sample_id)
        if identity in first_seen:
            problems.append(InputProblem(
                str(path), where, f"repeats dataset {checked.dataset!r} sample {checked.sample_id!r} "
                f"of {first_seen[identity]}; skipped"))
            continue
        first_seen[identity] = where
        records.append(checked)
    return PromptSet(records, problems, read_as)


def select_records(
    records: Iterable[PromptRecord], *, datasets: Sequence[str] | None = None, max_samples: int | None = None
) -> list[PromptRecord]:
    """The records of ``datasets`` (all when None), at most ``max_samples`` per dataset, in file order."""
    wanted = set(datasets) if datasets else None
    taken: dict[str, int] = {}
    chosen = []
    for record in records:
        if wanted is not None and record.dataset not in wanted:
            continue
        if max_samples is not None and taken.get(record.dataset, 0) >= max_samples:
            continue
        taken[record.dataset] = taken.get(record.dataset, 0) + 1
        chosen.append(record)
    return chosen


# -- styles ------------------------------------------------------------------------------------
def default_styles_text() -> str:
    return resources.files("imggen").joinpath("data/styles.json").read_text(encoding="utf-8")


def load_styles(path: str | os.PathLike | None = None) -> tuple[list[Style], list[InputProblem]]:
    """The styles of ``path`` (the packaged ten when None) and the entries that were skipped."""
    label = str(path) if path is not None else "imggen/data/styles.json"
    try:
        text = read_document(path) if path is not None else default_styles_text()
        document = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{label}: not a readable JSON file ({exc})") from None
    entries = document.get("styles") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        raise InputError(f"{label}: expected {{\"styles\": {{\"name\": \"template with {TEXT_SLOT}\", ...}}}}")
    styles, problems = [], []
    for name, template in entries.items():
        where = f"style {name!r}"
        if not name.strip():
            problems.append(InputProblem(label, where, "a style needs a name"))
        elif not isinstance(template, str) or TEXT_SLOT not in template:
            problems.append(InputProblem(label, where, f"the template must be a string containing {TEXT_SLOT}"))
        else:
            styles.append(Style(name.strip(), template))
    if not styles:
        raise InputError(f"{label}: no usable style")
    return styles, problems


def choose_styles(styles: Sequence[Style], names: Sequence[str] | None) -> list[Style]:
    """The styles called ``names`` in that order (all when None); an unknown name is an InputError."""
    if not names:
        return list(styles)
    by_name = {style.name: style for style in styles}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise InputError(f"unknown style(s) {', '.join(unknown)}; the styles file has {', '.join(by_name)}")
    return [by_name[name] for name in dict.fromkeys(names)]
