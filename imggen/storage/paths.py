"""Paths built from untrusted names (sample ids, datasets, styles) that can never leave the output root."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import unicodedata
from pathlib import Path

MAX_NAME_LENGTH = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# A hashed name ends with "-" and 26 base32 letters (130 bits of SHA-256): a name that looks like
# that is hashed too, so no name kept as it is can be another name's hashed form, and telling two
# names apart would take a SHA-256 collision.
DIGEST_LENGTH = 26
_HASHED_TAIL = re.compile(rf"-[a-z2-7]{{{DIGEST_LENGTH}}}\Z")


class UnsafePath(ValueError):
    """A path that would land outside its root."""


def safe_name(name: object, *, max_length: int = MAX_NAME_LENGTH) -> str:
    """Turn an untrusted name into one safe path component (or S3 key segment); distinct names stay distinct.

    Names made only of letters, digits, ``.``, ``_`` and ``-`` (not starting with a dot, at most
    ``max_length`` long) are kept as they are, so the seeds' file names stay unchanged. Any other
    name is cleaned and gets a hash of the original (``-`` and 26 base32 letters); a clean name
    that ends like a hash is hashed as well, so it cannot take the place of the name it imitates.
    """
    text = str(name)
    cleaned = _UNSAFE.sub("_", unicodedata.normalize("NFKC", text)).lstrip(".")
    if cleaned == text and cleaned and len(cleaned) <= max_length and not _HASHED_TAIL.search(cleaned):
        return cleaned
    raw = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    digest = base64.b32encode(raw).decode("ascii").lower()[:DIGEST_LENGTH]
    head = cleaned[: max_length - DIGEST_LENGTH - 1].strip("._") or "x"
    return f"{head}-{digest}"


def safe_path(root: str | os.PathLike, *parts: object) -> Path:
    """Join sanitized ``parts`` under ``root``; raise :class:`UnsafePath` if the result escapes it."""
    return inside(root, *(safe_name(part) for part in parts))


def inside(root: str | os.PathLike, *names: str) -> Path:
    """Join ``names`` that are already safe names (made by :func:`safe_name`) under ``root``, as they
    are; raise :class:`UnsafePath` if the result escapes it. (Sanitizing a safe name again would
    give another name: a hashed name is hashed again, see :func:`safe_name`.)"""
    root_path = Path(root).resolve()
    candidate = root_path.joinpath(*names).resolve()
    if candidate != root_path and root_path not in candidate.parents:
        raise UnsafePath(f"{candidate} is outside {root_path}")
    return candidate


def is_existing_file(path: str | os.PathLike) -> bool:
    """True when ``path`` names an existing file; False also for names the system rejects (NUL, too long)."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False
