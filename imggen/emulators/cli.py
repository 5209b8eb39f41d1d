"""``imggen emulate openai|replicate ...``: start one of the local API emulators."""

from __future__ import annotations

import importlib
import sys

EMULATORS = {
    "openai": "imggen.emulators.openai_server",
    "replicate": "imggen.emulators.replicate_server",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in EMULATORS:
        print(f"usage: imggen emulate {{{','.join(EMULATORS)}}} [options]  (add --help for the options)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return importlib.import_module(EMULATORS[argv[0]]).main(argv[1:]) or 0
