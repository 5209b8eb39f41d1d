"""The ``imggen`` command: one subcommand per job, each defined by the module that does the work.

Every subcommand module has ``main(argv) -> int``; importing it only when it is called keeps
``imggen --help`` fast and keeps torch out of commands that do not need it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "demo": ("imggen.demo.cli", "run all three pipelines offline with an HTML report (no keys, no GPU, no network)"),
    "styles": (
        "imggen.pipelines.styles.cli",
        "draw every sample of a prompt set in every style (OpenAI or local FLUX.2 klein)",
    ),
    "instructions": (
        "imggen.pipelines.instructions.cli",
        "one FLUX.2 klein image per predicted instruction, on every GPU (or a Ray cluster)",
    ),
    "trainset": (
        "imggen.pipelines.trainset.cli",
        "build a training set of unique, upscaled tiles from one source image",
    ),
    "sheet": (
        "imggen.pipelines.styles.sheet_cli",
        "rebuild a style-matrix folder's comparison sheets (HTML and PNG) from its ledger",
    ),
    "export": ("imggen.exports.cli", "export any pipeline's output folder for datasets, kohya, DreamBooth or WebDataset"),
    "tiny-checkpoint": ("imggen.backends.tiny_flux2", "build a tiny random FLUX.2 klein checkpoint, offline"),
    "emulate": ("imggen.emulators.cli", "serve a local OpenAI or Replicate API emulator on 127.0.0.1"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imggen",
        description="Build image datasets with generative models: resumable, rate limited, with progress.",
        epilog="Run 'imggen COMMAND --help' for a command's options.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_module, summary) in SUBCOMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        try:
            module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
        except KeyboardInterrupt:  # while the command's libraries load: nothing has begun
            print(f"imggen {argv[0]}: interrupted before the run began", file=sys.stderr)
            return 2
        return module.main(argv[1:])
    build_parser().parse_args(argv)  # prints help or the error, and exits
    return 2


if __name__ == "__main__":
    sys.exit(main())
