"""``imggen demo``: the three pipelines on local backends with an HTML report; ``imggen demo engine``: the engine alone."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import placeholder
from .report import write_report
from .tour import missing_files, run_tour


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if argv[:1] == ["engine"]:
        return placeholder.main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="imggen demo",
        description="Run the style matrix, instruction images and training set offline (no key, no GPU, no "
        "network) through their notebooks, then write an HTML report. 'imggen demo engine --help' shows the "
        "engine's placeholder job.",
    )
    parser.add_argument("--output", type=Path, default=Path("demo-output"), help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    missing = missing_files()
    if missing:
        parser.error("the demo runs the repository's notebooks and samples; missing: " + ", ".join(map(str, missing)))
    root = args.output.resolve()
    report = write_report(root, run_tour(root))
    print(f"report: {report}")
    return 0
