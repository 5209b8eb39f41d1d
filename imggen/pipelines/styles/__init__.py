"""The style matrix (seed 000): every text sample of a prompt set drawn in each of ten editable styles.

``inputs`` reads the prompt-set and styles files, ``layout`` owns the seed's file places and the
PNG provenance, ``generators`` draws one image (OpenAI or local FLUX.2 klein), ``work`` is what one
task does, ``run`` plans and runs a request, ``batch`` (with ``batch_requests``, ``batch_collect``
and ``batch_progress``) runs it through OpenAI's Batch API, ``sheet`` draws the comparison sheets,
``cli`` is ``imggen styles`` and ``sheet_cli`` is ``imggen sheet``.
"""

from .inputs import InputProblem, PromptRecord, Style, load_prompts, load_styles
from .run import CannotStart, StylePlan, StyleRequest, describe_plan, plan_styles, read_stats, run_styles
from .sheet import read_sheets, write_sheets

__all__ = [
    "CannotStart",
    "InputProblem",
    "PromptRecord",
    "Style",
    "StylePlan",
    "StyleRequest",
    "describe_plan",
    "load_prompts",
    "load_styles",
    "plan_styles",
    "read_sheets",
    "read_stats",
    "run_styles",
    "write_sheets",
]
