"""``imggen instructions``: the seed's image_generation.py arguments, plus the engine, device, seed and batch size."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rich.console import Console

from ...console import (
    NEW_ROUND_FLAGS, add_retry_failed, add_verbose, command_console, parse_args, report_skipped, report_summary,
    start_or_explain,
)
from ...engine.reporters import RichReporter
from ...literal import line
from .run import ENGINES, InstructionsOptions, InstructionsPlan, plan_instructions, run_instructions


DEFAULTS = InstructionsOptions()  # every default is the options class's


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imggen instructions",
        description="Generate one FLUX.2 klein image per predicted instruction, on every GPU "
        "(one worker process per GPU, or one Ray actor per GPU with --engine ray). Resumable.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--planning_model", metavar="NAME",
                       help="one planning model (a folder under --predicted_instructions_root)")
    which.add_argument("--all_planning_models", action="store_true",
                       help="every folder under --predicted_instructions_root")
    parser.add_argument("--flux_ckpt", type=Path, default=DEFAULTS.flux_ckpt,
                        help="FLUX.2 klein checkpoint folder (default: %(default)s)")
    parser.add_argument("--predicted_instructions_root", type=Path, default=DEFAULTS.predicted_instructions_root,
                        help="folder holding {planning_model}/results.jsonl (default: %(default)s)")
    parser.add_argument("--output_root", type=Path, default=DEFAULTS.output_root,
                        help="root of all outputs (default: %(default)s)")
    parser.add_argument("--image_root", type=Path, default=DEFAULTS.image_root,
                        help="folder the image_paths in results.jsonl are relative to (default: the current one)")
    parser.add_argument("--num_inference_steps", type=int, default=DEFAULTS.num_inference_steps,
                        help="denoising steps (default: the checkpoint's preset: 4 for the distilled klein, "
                        "50 for klein-base; the seed's 28 makes distilled klein 7x slower for no gain)")
    parser.add_argument("--height", type=int, default=DEFAULTS.height, help="image height, a multiple of 16 (default: the model's)")
    parser.add_argument("--width", type=int, default=DEFAULTS.width, help="image width, a multiple of 16 (default: the model's)")
    parser.add_argument("--num_gpus", type=int, default=DEFAULTS.num_gpus,
                        help="GPUs to use, -1 for all visible (respects CUDA_VISIBLE_DEVICES); "
                        "with --device cpu, the number of CPU workers (default: %(default)s)")
    parser.add_argument("--no_skip_existing", *NEW_ROUND_FLAGS, dest="no_skip_existing", action="store_true",
                        help="start a new round: generate every image again, also with other settings "
                        "(the earlier rounds stay in the ledger)")
    add_retry_failed(parser, "images")
    add_verbose(parser)
    parser.add_argument("--max_samples", type=int, default=DEFAULTS.max_samples,
                        help="only the first N records of each results.jsonl, -1 for all (default: %(default)s)")
    parser.add_argument("--engine", choices=ENGINES, default=DEFAULTS.engine,
                        help="local: one process per GPU here; ray: one actor per GPU on the Ray cluster "
                        "at RAY_ADDRESS, or a local Ray (default: %(default)s)")
    parser.add_argument("--device", default=DEFAULTS.device,
                        help="cuda, cpu, or one device such as cuda:1 (default: cuda if there is a GPU)")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed,
                        help="run seed; each image's seed is derived from it, the question id and the "
                        "instruction's index (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=DEFAULTS.batch_size,
                        help="images per pipeline call, from instructions sharing the same conditioning "
                        "images (default: %(default)s)")
    parser.add_argument("--dtype", default=DEFAULTS.dtype, help="bfloat16, float16 or float32 (default: bfloat16 on GPU, float32 on CPU)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the transformer; each worker compiles and warms up before taking work "
                        "(a minute or so), then runs faster; pixels may differ by a level from uncompiled runs")
    parser.add_argument("--offload", action="store_true",
                        help="keep each model on the CPU except while it runs, for GPUs with less memory than "
                        "the model needs (slower)")
    return parser


def options_from_args(args: argparse.Namespace) -> InstructionsOptions:
    return InstructionsOptions(
        planning_model=None if args.all_planning_models else args.planning_model,
        flux_ckpt=args.flux_ckpt,
        predicted_instructions_root=args.predicted_instructions_root,
        output_root=args.output_root,
        image_root=args.image_root,
        num_inference_steps=args.num_inference_steps,
        height=args.height,
        width=args.width,
        num_gpus=args.num_gpus,
        skip_existing=not args.no_skip_existing,
        retry_failed=args.retry_failed,
        max_samples=args.max_samples,
        engine=args.engine,
        device=args.device,
        seed=args.seed,
        batch_size=args.batch_size,
        dtype=args.dtype,
        compile=args.compile,
        offload=args.offload,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    console = command_console()
    return start_or_explain("imggen instructions", console, lambda: plan(args, console),
                            lambda planned: run(planned, console))


def plan(args: argparse.Namespace, console: Console) -> InstructionsPlan:
    planned = plan_instructions(options_from_args(args))
    console.print(line(planned.describe()), soft_wrap=True)
    return planned


def run(planned: InstructionsPlan, console: Console) -> int:
    options = planned.options
    result = asyncio.run(run_instructions(planned, reporters=[RichReporter("instructions", console)],
                                          handle_signals=True))
    for record in result.bad_records:
        console.print(line(("bad record", "yellow"), " ", str(record)), soft_wrap=True)
    console.print(line(f"stats: {len(result.stats_files)} stats.json file(s) under {options.output_root}"))
    return report_skipped(len(result.bad_records), report_summary(result.summary, console), console,
                          listed=f"above and in {options.output_root / 'run.log'}")
