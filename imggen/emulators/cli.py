"""``imggen emulate openai|replicate ...``: start one of the local API emulators."""

from __future__ import annotations

import importlib
import sys

EMULATORS = {
    "openai": ("imggen.emulators.openai_server",
               "the Images, Chat (vision), Files and Batch APIs, with rate limits and faults"),
    "replicate": ("imggen.emulators.replicate_server",
                  "flux-kontext-pro grids and Topaz upscales as predictions, with faults and billing"),
}
USAGE = f"usage: imggen emulate {{{','.join(EMULATORS)}}} [options]"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in EMULATORS:
        asked = bool(argv) and argv[0] in ("-h", "--help")
        print(USAGE, *(f"  {name:<10} {summary}" for name, (_, summary) in EMULATORS.items()),
              "Run 'imggen emulate NAME --help' for its options (port, latency, faults, limits).",
              sep="\n", file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    return importlib.import_module(EMULATORS[argv[0]][0]).main(argv[1:]) or 0
