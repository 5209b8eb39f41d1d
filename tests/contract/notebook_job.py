"""A kind's job run as a notebook runs it, for ``test_contract_pause.py``: the pipeline's Python API with
a :class:`~imggen.engine.control.RunControl`, and the panel's Pause / Resume buttons clicked from another
thread (JupyterLab delivers widget clicks on a kernel subshell, a thread beside the job's loop).

    python notebook_job.py PIPELINE ARGS...   (the words after ``imggen`` in the kind's command)

The arguments become the pipeline's request through its command's own parser (and, where the command
has one, its own planning function), and run as the notebooks run them: ``run_styles(plan, control=...)``
(01), ``run_instructions(options, control=...)`` (02), ``open_parts`` + ``run_trainset(..., control=...)``
(03: the body of ``TrainingDataGenerator.arun``, which takes no ``--flux-steps``). The reporter is the
notebook's own panel (:class:`~imggen.notebook.job.NotebookJob`, its widgets built).

Each line on stdin (``pause``, ``resume``, ``stop``) clicks that button; once the click has returned and
the job's loop has run past it, ``clicked: NAME`` is printed. The last line is ``ended: STATE MESSAGE``; the exit
status is 0 when the run finished, 1 when it ended otherwise, 3 when it raised.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback
from typing import Any, Awaitable

from imggen.console import parse_args
from imggen.engine.control import RunControl
from imggen.notebook.job import NotebookJob

_PRINTING = threading.Lock()


def say(text: str) -> None:
    with _PRINTING:
        print(text, flush=True)


def start(argv: list[str], control: RunControl, reporter: NotebookJob) -> Awaitable[Any]:
    """The job of ``imggen PIPELINE ARGS...``, started as that pipeline's notebook starts it."""
    pipeline, words = argv[0], argv[1:]
    if pipeline == "styles":
        from imggen.pipelines.styles import cli, plan_styles, run_styles

        plan = plan_styles(cli.request_from(parse_args(cli.build_parser(), words)))
        return run_styles(plan, control=control, reporters=[reporter])
    if pipeline == "instructions":
        from imggen.pipelines.instructions import cli, run_instructions

        options = cli.options_from_args(parse_args(cli.build_parser(), words))
        return run_instructions(options, control=control, reporters=[reporter])
    if pipeline == "trainset":
        from imggen.pipelines.trainset import cli, open_parts, run_trainset

        args = parse_args(cli.build_parser(), words)
        options, choices = cli.plan(args)

        async def job():
            async with open_parts(choices, user_id=args.user_id, actor_id=args.actor_id,
                                  local_root=args.output) as parts:
                return await run_trainset(args.source, args.user_id, args.actor_id, parts=parts,
                                          work_dir=args.output, options=options, debug_dir=args.debug_dir,
                                          control=control, reporters=[reporter])
        return job()
    raise SystemExit(f"notebook_job: no pipeline {pipeline!r}")


def click_from_stdin(panel: NotebookJob, loop: asyncio.AbstractEventLoop) -> None:
    """Click each button named on stdin; ``clicked: NAME`` once the job's loop has run past the click
    (a start the loop had already decided as the click landed is then counted before it)."""
    buttons = {"pause": panel.pause_button, "resume": panel.resume_button, "stop": panel.stop_button}
    for line in sys.stdin:
        name = line.strip()
        if name in buttons:
            buttons[name].click()
            passed = threading.Event()
            loop.call_soon_threadsafe(passed.set)
            passed.wait(30)
            say(f"clicked: {name}")


async def main(argv: list[str]) -> int:
    panel = NotebookJob(argv[0], interactive=True)
    threading.Thread(target=click_from_stdin, args=(panel, asyncio.get_running_loop()), daemon=True).start()
    result = await start(argv, panel.control, panel)
    summary = getattr(result, "summary", result)
    say(f"ended: {summary.state} {summary.message or ''}".rstrip())
    return 0 if summary.state == "finished" else 1


if __name__ == "__main__":
    try:
        code = asyncio.run(main(sys.argv[1:]))
    except BaseException:  # shown to the test, which reads stderr
        traceback.print_exc()
        code = 3
    sys.stdout.flush()
    raise SystemExit(code)
