"""Image seeds: each image's seed is derived from what names it, so a rerun redraws the same picture
whichever worker makes it and in whatever order."""

from __future__ import annotations

import hashlib
import json


def image_seed(*names: object) -> int:
    """A 63-bit seed fixed by ``names`` (JSON values: a task key, or a run seed with a question and an index)."""
    text = json.dumps(list(names))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
