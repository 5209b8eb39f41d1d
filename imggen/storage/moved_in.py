"""State an earlier imggen version kept in a JSON file of the run folder, moved into the ledger once.

:func:`move_in_once` hands the file's document to the table that keeps that state now, then renames
the file ``*.moved`` so it is read once and kept for the user to look at. A file that cannot be read
or has another shape hands nothing over: the state it kept starts over.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable


def move_in_once(path: Path, keep: Callable[[Any], None]) -> None:
    """Give the JSON document at ``path`` to ``keep``, if the file is there, and rename it ``*.moved``."""
    if not path.is_file():
        return
    try:
        keep(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # unreadable, or of another shape: that state starts over
    path.rename(path.with_name(path.name + ".moved"))
