"""``imggen export OUTPUT --to hf DIR``: any pipeline's output folder as a Hugging Face imagefolder.

Reads only the ledger and the images; sends nothing. Exit codes: 0 exported; 2 the folder is not
a pipeline output, or DIR holds something else (an export of another folder: only with --force).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from imggen.console import EXIT_STOPPED, command_console

from .detect import read_output
from .imagefolder import SPLIT, write_imagefolder
from .rows import CannotExport

FORMATS = ("hf",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imggen export", description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="a styles --output folder, an instructions output root, "
                        "or a training-set run folder {user_id}/{actor_id}")
    parser.add_argument("--to", nargs=2, metavar=("FORMAT", "DIR"), required=True,
                        help="hf DIR: a datasets imagefolder (load_dataset('imagefolder', data_dir=DIR))")
    parser.add_argument("--copy", action="store_true", help="copy the images instead of hard-linking them")
    parser.add_argument("--force", action="store_true", help="replace an earlier export of another output folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    kind, target = args.to
    if kind not in FORMATS:
        parser.error(f"--to {kind}: the formats are {', '.join(FORMATS)}")
    console = command_console()
    try:
        reading = read_output(args.output)
        metadata = write_imagefolder(reading, target, copy=args.copy, force=args.force)
    except CannotExport as exc:
        console.print(f"[red]cannot export:[/red] {escape(str(exc))}", soft_wrap=True)
        return EXIT_STOPPED
    left_out = ", ".join(f"{count} {status}" for status, count in sorted(reading.left_out.items()))
    console.print(f"{reading.pipeline}: {len(reading.rows)} images exported to {escape(str(target))}/{SPLIT}"
                  + (f" (not exported: {left_out})" if left_out else ""), soft_wrap=True)
    console.print(f"load it with datasets.load_dataset('imagefolder', data_dir={str(target)!r}); "
                  f"columns in {escape(str(metadata))}", soft_wrap=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
