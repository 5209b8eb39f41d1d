"""``imggen styles``: draw every sample of a prompt set in every style, resumably, from the command line.

Exit codes: 0 all images done; 1 some images failed (e.g. refused by the content policy);
2 stopped early (Ctrl-C, budget, quota) or could not start (bad input file, retired model,
missing OPENAI_API_KEY). Rerunning the same command continues where the last run stopped.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rich.console import Console

from imggen.backends.openai_models import DEFAULT_MODEL
from imggen.console import (
    add_allow_unpriced, add_new_round, add_retry_failed, add_verbose, at_least, command_console, concurrency,
    parse_args, report_skipped, report_summary, start_or_explain,
)
from imggen.engine.reporters import RichReporter
from imggen.literal import line

from .plan import BACKENDS, MODES, StylePlan, StyleRequest, describe_plan, plan_styles
from .run import openai_api_key, read_stats, run_styles
from .sheet_cli import report_sheets


DEFAULTS = StyleRequest(prompts="", output="")  # every other field's default is the request's


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imggen styles", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--prompts", type=Path, required=True,
        help="prompt-set file: .json, .jsonl or .csv with dataset, sample_id, text")
    add("--output", type=Path, required=True, help="output folder (images/, code/generation_state.json, ...)")
    add("--styles", dest="styles_file", type=Path, help="styles file (default: the ten packaged styles)")
    add("--style", dest="style_names", nargs="+", metavar="NAME", help="draw only these styles")
    add("--datasets", nargs="+", metavar="NAME", help="draw only these datasets")
    add("--max-samples", type=at_least(1), metavar="N", help="at most N samples per dataset")
    add("--backend", choices=BACKENDS, default=DEFAULTS.backend, help="openai (needs OPENAI_API_KEY) or flux2 (local)")
    add("--model", help=f"OpenAI image model (default: {DEFAULT_MODEL})")
    add("--size", help="image size, e.g. 1024x1024 (flux2: any multiple of 16, e.g. 512x512)")
    add("--quality", help="OpenAI quality, e.g. low, medium, high (dall-e-3: standard or hd)")
    add("--dalle-style", choices=("vivid", "natural"), help="dall-e-3 only (default: vivid, as the seed)")
    add("--allow-retired", action="store_true",
        help="allow a retired model (to rehearse against a local emulator)")
    add("--flux_ckpt", "--flux-ckpt", dest="flux_ckpt", type=Path, help="FLUX.2 klein checkpoint folder (flux2)")
    add("--flux-steps", type=int, help="denoising steps (flux2; default: the checkpoint's preset)")
    add("--rpm", type=at_least(0, float, exclusive=True), help="requests per minute (default: follow the server's rate-limit headers)")
    add("--tpm", type=at_least(0, float, exclusive=True),
        help="tokens per minute of your account, for GPT image models when its headers say none "
        "(default: follow the server's headers)")
    add("--concurrency", type=concurrency, default=DEFAULTS.concurrency,
        help="requests in flight, or auto: the rate limit x the observed latency (default: %(default)s)")
    add("--request-timeout", type=float, metavar="SECONDS",
        help="retry a request that has not answered after this long (default: the model's, e.g. 120 for GPT image)")
    add("--budget", type=at_least(0, float), metavar="USD", help="stop before spending more than this many US dollars")
    add_allow_unpriced(parser)
    add_retry_failed(parser, "images")
    add_new_round(parser, "images")
    add_verbose(parser)
    add("--dry-run", action="store_true", help="print the task count and estimated cost; send nothing")
    add("--sheet", action="store_true", help="after the run, write comparison sheets to images/sheets/ (HTML, PNG)")
    add("--mode", choices=MODES, default=DEFAULTS.mode,
        help="sync: one request per image; batch: OpenAI's Batch API at half the price, done within 24 h")
    add("--batch-size", type=int, metavar="N", help="batch mode: requests per batch (default: the API's 50,000)")
    add("--poll-seconds", type=float, default=DEFAULTS.poll_s, help="batch mode: seconds between polls (default: %(default)s)")
    add("--cancel-batches", action="store_true",
        help="batch mode: cancel this folder's open batches and keep what they finished")
    return parser


def request_from(args: argparse.Namespace) -> StyleRequest:
    return StyleRequest(
        prompts=args.prompts, output=args.output, styles_file=args.styles_file, styles=args.style_names,
        datasets=args.datasets, max_samples=args.max_samples, backend=args.backend, model=args.model,
        size=args.size, quality=args.quality, dalle_style=args.dalle_style, allow_retired=args.allow_retired,
        flux_ckpt=args.flux_ckpt, flux_steps=args.flux_steps, rpm=args.rpm, tpm=args.tpm, concurrency=args.concurrency,
        request_timeout_s=args.request_timeout, budget=args.budget, allow_unpriced=args.allow_unpriced,
        retry_failed=args.retry_failed, mode=args.mode,
        batch_size=args.batch_size, poll_s=args.poll_seconds, cancel_batches=args.cancel_batches,
        new_round=args.new_round,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    console = command_console()
    return start_or_explain("imggen styles", console, lambda: plan(args, console),
                            lambda planned: run(args, planned, console))


def plan(args: argparse.Namespace, console: Console) -> StylePlan:
    request = request_from(args)
    if request.backend == "openai" and not args.dry_run:
        openai_api_key()
    planned = plan_styles(request)
    shown = command_console(stdout=True) if args.dry_run else console  # a dry run's plan is its output
    shown.print(line(describe_plan(planned)), soft_wrap=True)
    return planned


def run(args: argparse.Namespace, plan: StylePlan, console: Console) -> int:
    if args.dry_run:
        console.print("dry run: nothing was sent")
        return 0
    result = asyncio.run(run_styles(plan, reporters=[RichReporter("styles", console)], handle_signals=True))
    billed = read_stats(args.output).get("billed_cost_usd", 0.0)  # every run of the folder, this one included
    console.print(line(f"images in {args.output / 'images'}; stats in {args.output / 'images' / 'processing_stats.json'}"
                       f" (${billed:.2f} billed in this folder over all runs)"), soft_wrap=True)
    if args.sheet:
        report_sheets(args.output, console)
    return report_skipped(len(plan.problems), report_summary(result.summary, console), console)


if __name__ == "__main__":
    raise SystemExit(main())
