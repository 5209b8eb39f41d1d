"""Image seeds, by one rule for every pipeline: a seed is derived from what names the image and the
round it is drawn in, so a rerun redraws the same picture whichever worker makes it and in whatever
order, and ``--new-round`` draws a new one.

Round 0's seed depends on the names alone (the seeds of a folder's first round never change); a
later round adds its number. A seed has 53 bits, so a JavaScript number (image sites) and A1111's
paste (a float) hold it exactly. Earlier versions drew 63-bit seeds: images already made keep theirs,
and so do the tasks an earlier run planned with them. A task key carries its round
(:func:`~.rounds.round_key`), so :func:`task_seed` reads it from there.
"""

from __future__ import annotations

import hashlib
import json

from .rounds import ROUND_MARK, split_round


def image_seed(*names: object, round_number: int = 0, bits: int = 53) -> int:
    """A ``bits``-bit seed fixed by ``names`` (JSON values: a task key, or a run seed with a question
    and an index) and the round."""
    text = json.dumps([*names, f"{ROUND_MARK}{round_number}"] if round_number else list(names))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> (64 - bits)


def task_seed(key: str, *, bits: int = 53) -> int:
    """The seed of the task ``key`` (its round read from the key)."""
    base, round_number = split_round(key)
    return image_seed(base, round_number=round_number, bits=bits)
