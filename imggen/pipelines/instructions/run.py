"""The instruction-image job: read the plan, run it on the model workers through the engine, then
write each folder's ``stats.json`` and ``run.log`` once every worker has finished.

:func:`plan_instructions` reads the inputs into tasks (:mod:`.plan`); :func:`run_instructions` runs
them. The engine runs in this process (ledger, progress, run control, and every retry decision:
:mod:`imggen.engine.retry`); :class:`~.work.InstructionWork` hands each task to the worker pool,
where :mod:`.render` asks FLUX.2 klein for the image and writes it (atomically); then this process
marks the ledger, so a crash between the two is healed by the next run.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import AsyncIterator, Callable, Sequence

from ...backends.flux2_checkpoint import checkpoint_source
from ...distributed.pool import WorkerPool
from ...distributed.processes import local_pool, worker_devices
from ...engine.announcer import Announcer
from ...engine.control import RunControl
from ...engine.errors import starting
from ...engine.events import Reporter
from ...engine.job import JobFiles, run_job
from ...engine.ledger import DONE, LEDGER_NAME, Ledger
from ...engine.runner import RunnerConfig, RunSummary
from ...literal import printable
from ...storage.atomic import atomic_write_json
from .layout import RUN_LOG, STATE_FOLDER, STATS_FILE, generation_stats
from .plan import Plan, build_plan, check_image_root, made_for, planning_model_names
from .render import CALL_LOG_ENV, RenderSpec
from .work import InstructionWork

log = logging.getLogger("imggen.instructions")
ENGINES = ("local", "ray")


@dataclass
class InstructionsOptions:
    """Everything a run takes; the CLI's arguments under the same names."""

    planning_model: str | None = None  # None: every folder under predicted_instructions_root
    flux_ckpt: Path = Path("checkpoints/flux2-klein-4B")
    predicted_instructions_root: Path = Path("predicted_instructions")
    output_root: Path = Path("generated_images")
    image_root: Path = Path(".")  # image_paths in results.jsonl are relative to this
    num_inference_steps: int | None = None  # None: the checkpoint's preset (4 for klein, 50 for klein-base)
    height: int | None = None
    width: int | None = None
    num_gpus: int = -1
    skip_existing: bool = True  # False: a new round, every image made again (also with other settings)
    retry_failed: bool = False  # also retry images that failed permanently before (e.g. an unreadable image, now fixed)
    max_samples: int = -1
    engine: str = "local"
    device: str | None = None  # None: cuda when there is a GPU, else cpu
    seed: int = 0
    batch_size: int = 1
    dtype: str | None = None  # None: bfloat16 on GPU, float32 on CPU
    compile: bool = False  # torch.compile the transformer (each worker warms it up before taking work)
    offload: bool = False  # keep each model on the CPU except while it runs (GPUs short of memory)

    def __post_init__(self) -> None:
        for name in ("flux_ckpt", "predicted_instructions_root", "output_root", "image_root"):
            setattr(self, name, Path(getattr(self, name)).expanduser())
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")

    @property
    def generation_model(self) -> str:
        return self.flux_ckpt.resolve().name  # a Hub id's name too: FLUX.2-klein-4B


@dataclass
class InstructionsResult:
    summary: RunSummary
    plan: Plan
    stats_files: list[Path] = field(default_factory=list)

    @property
    def bad_records(self) -> list:
        return self.plan.bad_records


@dataclass
class InstructionsPlan:
    """A checked run, before it starts: the options, the checkpoint they name, the folders' task plan,
    the workers, and what the inputs lack; nothing is loaded or sent yet."""

    options: InstructionsOptions
    checkpoint: str
    folders: Plan
    devices: list[str] | None  # each local worker's device; None: Ray actors, placed by the cluster
    missing_note: str | None = None  # the line saying how many records name missing source images

    @property
    def bad_records(self) -> list:
        return self.folders.bad_records

    def describe(self) -> str:
        """A few lines for people, printed before the run: what will be made, on what, from where."""
        plan, options = self.folders, self.options
        done = done_earlier(plan)
        models = sorted({group.planning_model for group in plan.groups})
        workers = (f"Ray actors ({options.device or 'cuda if the cluster has GPUs'})" if self.devices is None
                   else f"{len(self.devices)} worker(s) on {', '.join(self.devices)}")
        steps = options.num_inference_steps or "the checkpoint's preset"
        lines = [
            f"{plan.records} records ({len(plan.bad_records)} bad) from planning model(s) "
            f"{', '.join(models) or '-'} in {len(plan.groups)} folder(s) under {plan.root}",
            f"images: {plan.image_count} planned, {done} done earlier, {plan.image_count - done} to make",
            f"{workers}; checkpoint {self.checkpoint}, {steps} steps, batch size {options.batch_size}",
        ]
        return "\n".join(lines + [f"warning: {self.missing_note}"] * bool(self.missing_note))


def done_earlier(plan: Plan) -> int:
    """The plan's images already made, without taking the folder: done in the ledger, or on disk where
    a killed run wrote the image but not its record (the run heals those and makes only the rest)."""
    done: set[str] = set()
    if (plan.root / LEDGER_NAME).is_file():
        with Ledger(plan.root) as ledger:
            done = set(ledger.keys(DONE))
    keys = (key for entries in plan.groups.values() for entry in entries for key in entry.keys)
    return sum(key in done or (plan.root / key).is_file() for key in keys)  # a first round's key is its path


def plan_instructions(options: InstructionsOptions) -> InstructionsPlan:
    """Read the inputs and check them into tasks; nothing is loaded or written. A missing checkpoint or
    planning model, or an image root under which most source images are missing, is :class:`CannotStart`."""
    with starting():
        return _checked_plan(options)


def _checked_plan(options: InstructionsOptions) -> InstructionsPlan:
    checkpoint, _ = checkpoint_source(options.flux_ckpt)  # not a checkpoint, or nothing at all: stops here
    folders = build_plan(
        predicted_root=options.predicted_instructions_root,
        planning_models=planning_model_names(options.predicted_instructions_root, options.planning_model),
        output_root=options.output_root,
        image_root=options.image_root,
        generation_model=options.generation_model,
        seed=options.seed,
        height=options.height,
        width=options.width,
        max_samples=options.max_samples,
        regenerate=not options.skip_existing,
        settings={"checkpoint": checkpoint, "num_inference_steps": options.num_inference_steps},
    )
    missing = check_image_root(folders, options.image_root)
    devices = None if options.engine == "ray" else worker_devices(options.device, options.num_gpus)
    return InstructionsPlan(options, checkpoint, folders, devices, missing)


async def run_instructions(
    what: InstructionsOptions | InstructionsPlan,
    *,
    control: RunControl | None = None,
    reporters: Sequence[Reporter] = (),
    handle_signals: bool = False,
) -> InstructionsResult:
    """Generate one image per instruction for the chosen planning model(s); see the module docs.
    Given options, they are planned first (:func:`plan_instructions`)."""
    planned = plan_instructions(what) if isinstance(what, InstructionsOptions) else what
    options, plan = planned.options, planned.folders
    root = plan.root
    root.mkdir(parents=True, exist_ok=True)
    global_log = root / RUN_LOG
    # the plan names every planning model: the global log's alone, before this run's share of each folder's
    _append_lines(global_log, [f"plan: {line}" for line in planned.describe().splitlines()])
    log_start = global_log.stat().st_size
    _append_lines(global_log, [f"bad record {record}" for record in plan.bad_records], level="WARNING")
    spec = RenderSpec(planned.checkpoint, options.num_inference_steps, options.dtype,
                      os.environ.get(CALL_LOG_ENV), compile=options.compile, offload=options.offload,
                      batch_size=options.batch_size, height=options.height, width=options.width)
    announcer = Announcer()

    async with _worker_pool(planned, spec, announcer.say) as pool:
        files = JobFiles(root, state=Path(STATE_FOLDER, "generation_state.json"),
                         stats=Path(STATE_FOLDER, "processing_stats.json"), log=Path(RUN_LOG))
        summary = await run_job(
            files, plan.tasks(), InstructionWork(pool),
            config=RunnerConfig(concurrency=pool.capacity, retry_failed=options.retry_failed),
            control=control, reporters=reporters, handle_signals=handle_signals,
            outputs_valid=lambda task: made_for(root, task), rounds=plan.rounds, announcer=announcer,
        )
    _append_lines(global_log, [
        f"instructions: {sum(len(entries) for entries in plan.groups.values())} questions in "
        f"{len(plan.groups)} folder(s), {plan.image_count} images planned, {len(plan.bad_records)} bad record(s)"
    ])
    stats_files = write_folder_reports(plan, global_log, log_start)
    return InstructionsResult(summary, plan, stats_files)


@contextlib.asynccontextmanager
async def _worker_pool(planned: InstructionsPlan, spec: RenderSpec,
                       on_status: Callable[[str], None]) -> AsyncIterator[WorkerPool]:
    options = planned.options
    if planned.devices is None:
        from ...distributed.ray_actors import ray_pool

        async with ray_pool(spec, device=options.device, num_gpus=options.num_gpus,
                            batch_size=options.batch_size, on_status=on_status) as pool:
            yield pool
    else:
        async with local_pool(spec, planned.devices, batch_size=options.batch_size, on_status=on_status) as pool:
            yield pool


def write_folder_reports(plan: Plan, global_log: Path, log_start: int) -> list[Path]:
    """Each folder's stats.json (from the ledger) and its share of this run's log lines."""
    with Ledger(plan.root) as ledger:
        done = set(ledger.keys(DONE))
    with open(global_log, encoding="utf-8") as handle:
        handle.seek(log_start)
        this_run = handle.read().splitlines(keepends=True)
    prefixes = [group.prefix + "/" for group in plan.groups]
    written = []
    for group, entries in plan.groups.items():
        folder = group.folder(plan.root)
        counts = [(entry.question_id, sum(key in done for key in entry.keys)) for entry in entries]
        written.append(atomic_write_json(folder / STATS_FILE, generation_stats(counts)))
        mine = group.prefix + "/"
        lines = [line for line in this_run if mine in line or not any(p in line for p in prefixes)]
        with open(folder / RUN_LOG, "a", encoding="utf-8") as handle:
            handle.writelines(lines)
    return written


def _append_lines(path: Path, messages: list[str], level: str = "INFO") -> None:
    if not messages:
        return
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]  # logging's default time format
    with open(path, "a", encoding="utf-8") as handle:
        handle.writelines(f"{stamp} {level} {printable(message)}\n" for message in messages)
