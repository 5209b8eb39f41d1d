"""Reading a notebook's parameters cell the same way from the repository's root and from ``notebooks/``.

Jupyter runs a notebook in its own folder, papermill in the folder it is started from; paths in the
parameters are read against the repository's root in the first case, so the defaults
(``data/prompts/sample_prompts.json``) mean the same file both ways. ``papermill -p styles a,b``
passes a string, so list parameters take a comma-separated string too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


def notebook_path(value: str | os.PathLike | None) -> Path | str | None:
    """A path from a notebook's parameters: absolute as given, relative to the repository's root when
    the notebook runs in the repository's ``notebooks/`` folder (Jupyter's working folder), else to
    the working folder (papermill's). So ``data/prompts/sample_prompts.json`` means the same file
    from the repository's root and from ``notebooks/``. A URL or data URI is returned as it is."""
    if value is None:
        return None
    if isinstance(value, str) and (value.startswith("data:") or "://" in value):
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    here = Path.cwd()
    in_repository = here.name == "notebooks" and (here.parent / "pyproject.toml").is_file() and (
        here.parent / "imggen").is_dir()
    return (here.parent if in_repository else here) / path


def as_list(value: str | Sequence[str] | None) -> list[str] | None:
    """A list parameter: a list as given, or a comma-separated string (``-p styles cartoon,anime``)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return list(value)
