"""Reading ``predicted_instructions/{planning_model}/results.jsonl``: one question per line.

Each line is a JSON object with ``id``, ``dataset``, ``image_paths`` and ``instructions``. Image
paths are relative to the image root (the current directory by default); a path that does not
exist is tried again with its ``dataset/`` folder read as ``datasets/``, as the seed did. A line
that cannot be used (broken JSON, a missing or mistyped field, a missing image, a repeated id) is
a :class:`BadRecord` naming ``file:line``; the other lines are read as usual. The file may start
with a UTF-8 byte-order mark; a line with bytes that are not UTF-8 is one bad record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ...storage.paths import is_existing_file
from ...storage.text_files import numbered_lines

REQUIRED_FIELDS = ("id", "dataset", "image_paths", "instructions")
RESULTS_FILE = "results.jsonl"


@dataclass(frozen=True)
class Question:
    """One usable record: its instructions and the conditioning images, resolved to absolute paths."""

    question_id: str | int
    dataset: str
    image_paths: tuple[str, ...]
    instructions: tuple[str, ...]
    source: str  # file:line


@dataclass(frozen=True)
class BadRecord:
    source: str  # file:line
    message: str
    dataset: str | None = None  # known when the record got that far, so stats can count the question
    question_id: str | int | None = None
    missing_image: Path | None = None  # the image path it names, under the image root, when that file is missing

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


def remap_image_path(path: str, image_root: Path) -> Path | None:
    """The existing file for ``path``: as written, else with its ``dataset/`` folder as ``datasets/``."""
    candidate = image_root / path
    if is_existing_file(candidate):
        return candidate.resolve()
    parts = Path(path).parts
    if "dataset" in parts:
        index = parts.index("dataset")
        remapped = image_root.joinpath(*parts[:index], "datasets", *parts[index + 1:])
        if is_existing_file(remapped):
            return remapped.resolve()
    return None


def read_questions(
    results: Path, *, image_root: Path, max_samples: int = -1
) -> Iterator[Question | BadRecord]:
    """Yield a Question or a BadRecord for each non-blank line (the first ``max_samples`` if >= 0)."""
    seen: dict[tuple[str, str], str] = {}
    count = 0
    for line in numbered_lines(results):
        if not line.undecodable and not line.text.strip():
            continue
        if 0 <= max_samples <= count:
            return
        count += 1
        source = f"{results}:{line.number}"
        record = BadRecord(source, line.undecodable) if line.undecodable else _parse(line.text, source, image_root)
        if isinstance(record, Question):
            identity = (record.dataset, str(record.question_id))
            if identity in seen:
                record = BadRecord(source, f"id {record.question_id!r} of dataset {record.dataset!r} "
                                   f"repeats {seen[identity]}")
            else:
                seen[identity] = source
        yield record


def _parse(line: str, source: str, image_root: Path) -> Question | BadRecord:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        return BadRecord(source, f"not valid JSON ({error.msg} at column {error.colno})")
    if not isinstance(record, dict):
        return BadRecord(source, f"expected a JSON object, got {type(record).__name__}")
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if missing:
        return BadRecord(source, f"missing field(s): {', '.join(missing)}")
    question_id, dataset = record["id"], record["dataset"]
    if isinstance(question_id, bool) or not isinstance(question_id, (str, int)) or str(question_id) == "":
        return BadRecord(source, f"'id' must be a non-empty string or an integer, got {question_id!r}")
    if not isinstance(dataset, str) or not dataset:
        return BadRecord(source, f"'dataset' must be a non-empty string, got {dataset!r}")
    image_paths, instructions = record["image_paths"], record["instructions"]
    if not _strings(image_paths):
        return BadRecord(source, "'image_paths' must be a list of strings", dataset, question_id)
    if not _strings(instructions):
        return BadRecord(source, "'instructions' must be a list of strings", dataset, question_id)
    resolved = []
    for path in image_paths:
        found = remap_image_path(path, image_root)
        if found is None:
            return BadRecord(source, f"image not found: {path} (also tried dataset/ -> datasets/)",
                             dataset, question_id, missing_image=image_root.absolute() / path)
        resolved.append(str(found))
    return Question(question_id, dataset, tuple(resolved), tuple(instructions), source)


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
