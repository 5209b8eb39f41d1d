"""Paths built from untrusted names (sample ids, datasets, styles) that can never leave the output root."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import Path

MAX_NAME_LENGTH = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UnsafePath(ValueError):
    """A path that would land outside its root."""


def safe_name(name: object, *, max_length: int = MAX_NAME_LENGTH) -> str:
    """Turn an untrusted name into one safe path component.

    Names made only of letters, digits, ``.``, ``_`` and ``-`` (not starting with a dot) are kept
    as they are, so the seeds' file names stay unchanged. Any other name is cleaned and gets a short
    hash of the original, so two different names never map to the same component.
    """
    text = str(name)
    cleaned = _UNSAFE.sub("_", unicodedata.normalize("NFKC", text)).lstrip(".")
    if cleaned == text and cleaned and len(cleaned) <= max_length:
        return cleaned
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    head = cleaned[: max_length - len(digest) - 1].strip("._") or "x"
    return f"{head}-{digest}"


def safe_path(root: str | os.PathLike, *parts: object) -> Path:
    """Join sanitized ``parts`` under ``root``; raise :class:`UnsafePath` if the result escapes it."""
    root_path = Path(root).resolve()
    candidate = root_path.joinpath(*(safe_name(part) for part in parts)).resolve()
    if candidate != root_path and root_path not in candidate.parents:
        raise UnsafePath(f"{candidate} is outside {root_path}")
    return candidate


def is_existing_file(path: str | os.PathLike) -> bool:
    """True when ``path`` names an existing file; False also for names the system rejects (NUL, too long)."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False
