"""``imggen trainset``: build (or continue) the training set of one actor from one source image."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import fields
from pathlib import Path

from rich.console import Console

from imggen.backends.captioners import CAPTION_CHOICES
from imggen.console import (
    add_allow_unpriced, add_new_round, add_retry_failed, add_verbose, at_least, command_console, concurrency,
    parse_args, report_summary,
    start_or_explain,
)
from imggen.engine.reporters import RichReporter
from imggen.literal import line

from .layout import WORK_DIR
from .parts import TrainsetChoices, open_parts
from .plan import DEFAULTS, TrainsetOptions
from .run import run_trainset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imggen trainset",
        description="Generate grids from one source image, keep the unique tiles, upscale and store them "
        "until the target count is reached. Rerun the same command to continue an interrupted run.",
    )
    add = parser.add_argument
    add("--source", required=True, help="the source image: https URL, local path or data URI")
    add("--user-id", required=True, help="owner of the images (sanitized into paths and S3 keys)")
    add("--actor-id", required=True, help="the character the set is for (sanitized)")
    add("--target", type=at_least(1), default=DEFAULTS.target, help="training images wanted (default: %(default)s)")
    add("--grid", type=at_least(2), default=DEFAULTS.grid,
        help="tiles per side of each grid: 3, 4, 5... (default: %(default)s)")
    add("--storage", choices=("s3", "local"), help="where images go (default: s3 when AWS_USER_FILES_BUCKET is set)")
    add("--output", type=Path, default=WORK_DIR,
        help="run folders (ledger, grids, upscales) and local storage (default: %(default)s)")
    add("--judge", choices=("gpt", "hash"), help="tile judge (default: gpt when OPENAI_API_KEY is set, else hash)")
    add("--upscaler", help=f"topaz, lanczos, or the path of a model file for spandrel (default: {TrainsetChoices.upscaler})")
    add("--local", action="store_true",
        help="run on this machine: FLUX.2 klein (--flux_ckpt), hash judge, Lanczos, local folder")
    add("--flux_ckpt", "--flux-ckpt", dest="flux_ckpt", type=Path, help="FLUX.2 klein checkpoint folder")
    add("--flux-size", type=int, default=TrainsetChoices.flux_size,
        help="side of a locally drawn grid in pixels (default: %(default)s)")
    add("--flux-steps", type=int, default=None, help="denoising steps (default: the checkpoint's preset)")
    add("--descriptions", type=Path, help="your own pool of tile subjects (JSON: {category: [subject, ...]})")
    add("--max-grids", type=at_least(1), default=DEFAULTS.max_grids,
        help="grid attempts per run (default: %(default)s)")
    add("--grid-concurrency", type=concurrency, default=DEFAULTS.grid_concurrency,
        help="grids drawn at once, or auto: the create pace x the grids' latency, never more than needed "
        "(default: %(default)s)")
    add("--upscale-concurrency", type=concurrency, default=DEFAULTS.upscale_concurrency,
        help="upscales in flight at once, or auto: the create pace x the upscales' latency (default: %(default)s)")
    add("--rpm", type=at_least(0, float, exclusive=True),
        help="Replicate creates per minute, your account's limit (default: Replicate's documented 600; "
        "lower while credit is low, higher if Replicate raised it)")
    add("--budget", type=at_least(0, float), default=None, help="stop before spending more than this many USD in this run")
    add_allow_unpriced(parser)
    add_retry_failed(parser, "training images")
    add_new_round(parser, "training images")
    add_verbose(parser)
    add("--debug-dir", type=Path, help="also save grid1.jpg..., training-image1.jpg... here")
    add("--vision-model", default=None, help="OpenAI vision model for --judge gpt and --caption gpt")
    add("--trigger-word", default=None, help="the word that starts every caption (training-imageN.txt, metadata.jsonl)")
    add("--caption", choices=CAPTION_CHOICES, default=TrainsetChoices.caption,
        help="caption after the trigger word: the tile's description (free) or the OpenAI vision model's "
        "(default: %(default)s)")
    add("--dup-threshold", type=at_least(0), default=DEFAULTS.dup_threshold,
        help="a tile within this many perceptual-hash bits of a tile already kept for the actor, in any grid "
        "or run, is refused before its upscale (default: %(default)s)")
    add("--replicate-wait", type=int, default=0,
        help="seconds a Replicate create call may hold for a fast result (0: answer at once and poll; "
        "a kill inside a hold pays that prediction again) (default: %(default)s)")
    add("--output-format", choices=("jpg", "png"), default=TrainsetChoices.output_format,
        help="image format (default: %(default)s)")
    return parser


def choices_from(args: argparse.Namespace) -> TrainsetChoices:
    return TrainsetChoices.chosen(
        local=args.local, judge=args.judge, upscaler=args.upscaler, storage=args.storage,
        flux_checkpoint=args.flux_ckpt, flux_size=args.flux_size, flux_steps=args.flux_steps,
        vision_model=args.vision_model, output_format=args.output_format,
        replicate_wait_s=args.replicate_wait or None, caption=args.caption,
    )


def plan(args: argparse.Namespace) -> tuple[TrainsetOptions, TrainsetChoices]:
    """The options (each a flag of the same name) and the parts the flags choose."""
    options = TrainsetOptions(**{option.name: getattr(args, option.name) for option in fields(TrainsetOptions)})
    return options, choices_from(args)


async def run(args: argparse.Namespace, options: TrainsetOptions, choices: TrainsetChoices, console: Console):
    async with open_parts(choices, user_id=args.user_id, actor_id=args.actor_id, local_root=args.output) as parts:
        return await run_trainset(
            args.source, args.user_id, args.actor_id, parts=parts, work_dir=args.output, options=options,
            debug_dir=args.debug_dir, reporters=[RichReporter("training images", console)], handle_signals=True,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    console = command_console()
    return start_or_explain("imggen trainset", console, lambda: plan(args),
                            lambda planned: finish(args, console, asyncio.run(run(args, *planned, console))))


def finish(args: argparse.Namespace, console: Console, result) -> int:
    for url in result.training_image_urls:
        print(url)
    console.print(line(f"{len(result.images)}/{args.target} training images from {result.total_grids_generated} grids; "
                       f"{result.cost_line()}; run folder {result.job_root}"), soft_wrap=True)
    return report_summary(result.summary, console)


if __name__ == "__main__":
    raise SystemExit(main())
