"""``imggen export OUTPUT --to FORMAT DIR``: any pipeline's output folder as a dataset other tools read.

Formats: ``hf`` (a Hugging Face imagefolder), ``kohya`` (sd-scripts' ``N_name/`` folder with ``.txt``
captions, which ai-toolkit reads too), ``dreambooth`` (images only, for diffusers' DreamBooth
scripts) and ``webdataset`` (tar shards). Reads only the ledger and the images; sends nothing. Exit
codes: 0 exported; 2 the folder is not a pipeline output, or DIR holds something else (an export of
another folder: only with --force).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from imggen.console import EXIT_STOPPED, at_least, command_console

from .detect import read_output
from .imagefolder import SPLIT, imagefolder_writer
from .rows import CannotExport
from .target import write_export
from .trainers import DEFAULT_REPEATS, dreambooth_writer, kohya_writer
from .webdataset import SAMPLES_PER_SHARD, webdataset_writer

# What each format is, and how to load it (DIR is the export).
FORMATS = {
    "hf": ("a datasets imagefolder", "datasets.load_dataset('imagefolder', data_dir={dir!r})"),
    "kohya": ("a kohya sd-scripts folder (N_name/ with .txt captions; ai-toolkit reads it too)",
              "sd-scripts: --train_data_dir {dir} --caption_extension .txt"),
    "dreambooth": ("a folder of images only (instance/)",
                   "diffusers' DreamBooth scripts: --instance_data_dir {dir}/instance"),
    "webdataset": ("WebDataset tar shards (image, .txt caption, .json columns per key)",
                   "webdataset.WebDataset('{dir}/{{00000..{last:05d}}}.tar')"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imggen export", description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="a styles --output folder, an instructions output root, "
                        "or a training-set run folder {user_id}/{actor_id}")
    parser.add_argument("--to", nargs=2, metavar=("FORMAT", "DIR"), required=True,
                        help="; ".join(f"{name} DIR: {what}" for name, (what, _) in FORMATS.items()))
    parser.add_argument("--copy", action="store_true", help="copy the images instead of hard-linking them")
    parser.add_argument("--force", action="store_true", help="replace an earlier export of another output folder")
    parser.add_argument("--repeats", type=at_least(1), default=DEFAULT_REPEATS,
                        help="kohya: how often sd-scripts shows each image per epoch, the folder's N_ "
                        "(default: %(default)s)")
    return parser


def writer(kind: str, args: argparse.Namespace):
    if kind == "hf":
        return imagefolder_writer(copy=args.copy)
    if kind == "kohya":
        return kohya_writer(copy=args.copy, repeats=args.repeats)
    if kind == "dreambooth":
        return dreambooth_writer(copy=args.copy)
    return webdataset_writer(copy=args.copy)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    kind, target = args.to
    if kind not in FORMATS:
        parser.error(f"--to {kind}: the formats are {', '.join(FORMATS)}")
    console = command_console()
    try:
        reading = read_output(args.output)
        write_export(reading, target, writer(kind, args), kind=kind, force=args.force)
    except CannotExport as exc:
        console.print(f"[red]cannot export:[/red] {escape(str(exc))}", soft_wrap=True)
        return EXIT_STOPPED
    left_out = ", ".join(f"{count} {status}" for status, count in sorted(reading.left_out.items()))
    where = f"{target}/{SPLIT}" if kind == "hf" else target
    what, load = FORMATS[kind]
    console.print(f"{reading.pipeline}: {len(reading.rows)} images exported to {escape(str(where))} as {what}"
                  + (f" (not exported: {left_out})" if left_out else ""), soft_wrap=True)
    last_shard = max(0, (len(reading.rows) - 1) // SAMPLES_PER_SHARD)
    console.print(escape(f"load it with {load.format(dir=str(target), last=last_shard)}"), soft_wrap=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
