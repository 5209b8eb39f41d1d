"""Seed 001, instruction images: one FLUX.2 klein image per instruction a planning model predicted.

Input ``predicted_instructions/{planning_model}/results.jsonl``; output
``generated_images/{dataset}/{planning_model}/{generation_model}/{question_id}/img_{i}.png`` with a
``stats.json`` and ``run.log`` per folder. Runs on every local GPU (one worker process each) or on
a Ray cluster (one actor per GPU); resumable through the engine's ledger in the output root.

``inputs`` reads the results.jsonl files, ``plan`` turns them into tasks (keys, seeds, rounds),
``work`` is what one task does (hand it to the worker pool), ``render`` is what a worker does with
a batch (FLUX.2 klein, then the PNG), ``layout`` owns the file places and stats.json, ``run`` plans
and runs, ``gallery`` captions a run's images for a notebook and ``cli`` is ``imggen instructions``.
"""

from .gallery import captioned_images
from .run import InstructionsOptions, InstructionsPlan, InstructionsResult, plan_instructions, run_instructions

__all__ = [
    "InstructionsOptions", "InstructionsPlan", "InstructionsResult", "captioned_images", "plan_instructions",
    "run_instructions",
]
