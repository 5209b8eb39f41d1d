"""``imggen demo``: the three pipelines on local backends with an HTML report; ``imggen demo engine``: the engine alone.

The tour's libraries (papermill, the report's) load only once the arguments are read, so ``--help``
answers at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if argv[:1] == ["engine"]:
        from . import placeholder

        return placeholder.main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="imggen demo",
        description="Run the style matrix, instruction images and training set offline (no key, no GPU, no "
        "network) through their notebooks, then write an HTML report. 'imggen demo engine --help' shows the "
        "engine's placeholder job.",
    )
    parser.add_argument("--output", type=Path, default=Path("demo-output"), help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    from .report import write_report
    from .tour import missing_files, run_tour

    missing = missing_files()
    if missing:
        parser.error("the demo runs the repository's notebooks and samples; missing: " + ", ".join(map(str, missing)))
    root = args.output.resolve()
    try:
        report = write_report(root, run_tour(root))
    except KeyboardInterrupt:
        print("imggen demo: interrupted; run it again to start over", file=sys.stderr)
        return 2
    print(f"report: {report}")
    return 0
