"""``imggen sheet OUTPUT``: rebuild the comparison sheets of a style-matrix folder; nothing is drawn or sent.

Works on a finished run, an interrupted one, or one still going (the sheets show what the ledger
says now). Exit codes: 0 sheets written; 2 the folder is not a style-matrix output.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from imggen.console import EXIT_STOPPED, command_console

from .sheet import NotAStyleMatrix, write_sheets


def report_sheets(output: Path, console: Console) -> bool:
    """Write the sheets of ``output`` and say where they are; False (with the reason) when it cannot."""
    try:
        written = write_sheets(output)
    except NotAStyleMatrix as exc:
        console.print(f"[red]no sheet:[/red] {escape(str(exc))}", soft_wrap=True)
        return False
    for path in written:
        console.print(f"sheet: {escape(str(path))}", soft_wrap=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imggen sheet", description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="the --output folder of an imggen styles run")
    args = parser.parse_args(argv)
    return 0 if report_sheets(args.output, command_console()) else EXIT_STOPPED


if __name__ == "__main__":
    raise SystemExit(main())
