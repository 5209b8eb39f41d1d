"""``python -m imggen.pipelines.instructions``: the same as ``imggen instructions``."""

import sys

from .cli import main

sys.exit(main())
