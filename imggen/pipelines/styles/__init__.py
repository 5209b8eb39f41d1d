"""The style matrix (seed 000): every text sample of a prompt set drawn in each of ten editable styles.

``inputs`` reads the prompt-set and styles files, ``plan`` turns a request into tasks with their
cost, ``drawers`` draws one image (OpenAI or local FLUX.2 klein), ``work`` is what one task does,
``layout`` owns the seed's file places, ``run`` runs a plan, ``batch`` (with ``batch_requests``,
``batch_send``, ``batch_collect`` and ``batch_progress``) runs it through OpenAI's Batch API,
``sheet`` draws the comparison sheets, ``cli`` is ``imggen styles`` and ``sheet_cli`` is ``imggen sheet``.
"""

from .inputs import InputProblem, PromptRecord, Style, load_prompts, load_styles
from .plan import CannotStart, StylePlan, StyleRequest, describe_plan, plan_styles
from .run import StylesResult, read_stats, run_styles
from .sheet import read_sheets, write_sheets

__all__ = [
    "CannotStart",
    "InputProblem",
    "PromptRecord",
    "Style",
    "StylePlan",
    "StyleRequest",
    "StylesResult",
    "describe_plan",
    "load_prompts",
    "load_styles",
    "plan_styles",
    "read_sheets",
    "read_stats",
    "run_styles",
    "write_sheets",
]
