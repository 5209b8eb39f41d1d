"""``imggen instructions`` that kills itself (SIGKILL) while the ledger records its plan.

Run as ``python kill_while_planning.py STAGE PLANNED ARGS...``: after the planner has produced
PLANNED tasks (their side effects done), the process is killed before the ledger's plan commits
(STAGE ``before-commit``) or right after it (``after-commit``). Everything else is the real command.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys

from imggen.engine.ledger import Ledger
from imggen.pipelines.instructions.cli import main

stage, planned = sys.argv[1], int(sys.argv[2])
record_plan = Ledger.plan


def plan_then_die(self, tasks, run_id, **options):
    tasks = iter(tasks)
    head = list(itertools.islice(tasks, planned))
    if stage == "before-commit":
        os.kill(os.getpid(), signal.SIGKILL)
    count = record_plan(self, itertools.chain(head, tasks), run_id, **options)
    os.kill(os.getpid(), signal.SIGKILL)
    return count


Ledger.plan = plan_then_die
sys.exit(main(sys.argv[3:]))
