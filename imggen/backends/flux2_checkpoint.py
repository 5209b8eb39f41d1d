"""Where a FLUX.2 klein checkpoint comes from: a local folder, or a Hugging Face Hub id.

A path that exists must be a checkpoint folder (with ``model_index.json``). A name that is not on
disk and reads ``owner/name`` (``black-forest-labs/FLUX.2-klein-4B``) is a Hub id when the Hugging
Face cache has it or the Hub knows it; ``from_pretrained`` then loads it through the cache and
honours ``HF_HUB_OFFLINE`` as diffusers does. Anything else does not exist, and the message says so
(and how to get the real checkpoint) before any work starts.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
REAL_CHECKPOINTS = "black-forest-labs/FLUX.2-klein-4B (distilled, 4 steps) or black-forest-labs/FLUX.2-klein-base-4B"


def checkpoint_source(value: str | os.PathLike) -> tuple[str, bool]:
    """``(what from_pretrained is given, whether it is a local folder)``; FileNotFoundError when neither."""
    path = Path(value).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(f"{path} is not a FLUX.2 klein checkpoint folder (it has no model_index.json)")
        return str(path.resolve()), True
    missing = f"the checkpoint {path} does not exist"
    if not _HUB_ID.fullmatch(str(value)) or str(value).startswith((".", "~")):
        raise FileNotFoundError(f"{missing}: {_WHERE}")
    problem = _hub_problem(str(value))
    if problem:
        raise FileNotFoundError(f"{missing} here, and as a Hugging Face Hub id {problem}: {_WHERE}")
    return str(value), False


def checkpoint_setting(value: str | os.PathLike) -> str:
    """The checkpoint as a run's setting: a folder's absolute path, anything else (a Hub id) as given."""
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else str(value)


_WHERE = (f"give a FLUX.2 klein checkpoint folder or a Hub id such as {REAL_CHECKPOINTS} (to keep a copy: "
          "hf download black-forest-labs/FLUX.2-klein-4B --local-dir checkpoints/flux2-klein-4B)")


def _hub_problem(repo_id: str) -> str | None:
    """Why ``repo_id`` cannot be loaded from the cache or the Hub, or None when it can."""
    from huggingface_hub import constants, model_info, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "model_index.json"), str):
        return None
    if constants.HF_HUB_OFFLINE:
        return "it is not in the Hugging Face cache (HF_HUB_OFFLINE is set)"
    try:
        model_info(repo_id, timeout=10)
    except Exception as error:  # not found, gated, or no network: the Hub's own exceptions vary
        return f"it could not be found ({type(error).__name__})"
    return None
