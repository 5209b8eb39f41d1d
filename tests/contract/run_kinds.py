"""Every kind of run the contract battery checks, each behind the same small face.

A kind starts what its run needs (a provider emulator, a local S3, a tiny checkpoint), lays its
inputs in a folder, and says how to run it as a user would (the real command in a child process),
how many images it has made, how many paid calls its provider has received, and how many images a
stop may still let finish: what a local model holds (workers x batch, and images it is still writing), or
the requests in flight.
The same job also runs as a notebook runs it (``Run.in_a_notebook``: the pipeline's Python API with a
run control, see notebook_job.py), for what only a notebook can do: pause and resume.
Where it can, a kind also says how to make some of its images fail for good from outside, as a user's
inputs or disk would (a prompt the provider refuses, an unreadable input image, a folder where an image
goes), and how to undo it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

from imggen.backends.openai_models import price
from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO, replicate_models
from imggen.emulators.openai_batch_store import BatchEmulatorConfig
from imggen.engine.ledger import LEDGER_NAME
from styles_fixtures import CHEAP, emulator, emulator_env, generations, records, write_records
from trainset_fixtures import bytes_unread_by, running_services, source_image_bytes, wait_until_creates_are_answered

from instructions_fixtures import PLANNER, SIZE, STEPS, sample_inputs

PRICED_MODEL = "gpt-image-1-mini"  # priced per image (what the emulator drew is what was billed); retired, so rehearsed
IMGGEN = str(Path(sys.executable).with_name("imggen"))  # the command a user runs
STYLES, INSTRUCTIONS, TRAINSET = [IMGGEN, "styles"], [IMGGEN, "instructions"], [IMGGEN, "trainset"]
NOTEBOOK_JOB = Path(__file__).with_name("notebook_job.py")  # a command's job run as its notebook runs it


@dataclass
class Run:
    """One kind of run, ready in a folder."""

    command: list[str]
    bad_command: list[str]  # the same run with an input that cannot be used: it must not start
    image_files: Callable[[], list[Path]]  # the images made so far
    expected: int  # the images of the whole job
    drawing: int | None  # images a stop may still let finish: being drawn or written (None: bounded by the paid
    # calls in flight)
    paid_calls: Callable[[], int] = lambda: 0  # paid requests the provider has received (a local model: none)
    ledger_root: Path | None = None  # where the run's ledger is (its running tasks were started before a stop)
    calls_per_task: int = 1  # paid calls one task may still send once started
    settle: Callable[[], None] = lambda: None  # wait until the provider has read and answered what was sent
    billed_usd: Callable[[], float] | None = None  # what the provider billed so far (None: a free, local run)
    unit_usd: float = 0.0  # the price of the job's dearest single paid call, for sizing a budget
    loads_a_model: bool = False  # a local model: its workers load before the first image
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    # the paid calls its ledger records the moment the provider answers a create, (task key, state) each
    # (None: the kind records none so; its answer is its image)
    recorded_calls: Callable[[], list[tuple[str, str]]] | None = None
    # make some images of the job fail for good, from outside; returns what removes the cause (None: no way)
    fail_some: Callable[[], Callable[[], None]] | None = None

    def images(self) -> int:
        return len(self.image_files())

    @property
    def in_a_notebook(self) -> list[str]:
        """The same job run as its notebook runs it: the pipeline's Python API with a RunControl whose
        Pause / Resume / Stop buttons are clicked by lines on stdin (see notebook_job.py); run with ``env``."""
        return [sys.executable, str(NOTEBOOK_JOB), *self.command[1:]]


def running_tasks(root: Path | None) -> int:
    """Tasks the run's ledger has running (started, not finished); 0 before it exists."""
    if root is None or not (root / LEDGER_NAME).is_file():
        return 0
    with contextlib.closing(sqlite3.connect(root / LEDGER_NAME)) as db:
        return db.execute("SELECT COUNT(*) FROM tasks WHERE status = 'running'").fetchone()[0]


def in_ledger(root: Path | None, expression: str) -> int:
    """``expression`` summed over every task of the run's ledger, in every table of tasks (the run's own
    and its sub-tasks: a training set's grids); 0 before it exists. ``attempts``: the starts of a task
    (each attempt counts one); ``status = 'done'``: the tasks finished."""
    if root is None or not (root / LEDGER_NAME).is_file():
        return 0
    with contextlib.closing(sqlite3.connect(f"{(root / LEDGER_NAME).as_uri()}?mode=ro", uri=True)) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return sum(db.execute(f'SELECT COALESCE(SUM({expression}), 0) FROM "{name}"').fetchone()[0] for name in tables
                   if any(column[1] == "attempts" for column in db.execute(f'PRAGMA table_info("{name}")')))


def files(folder: Path, pattern: str) -> Callable[[], list[Path]]:
    def found() -> list[Path]:
        if not folder.exists():
            return []
        return sorted(path for path in folder.rglob(pattern) if path.is_file() and not path.is_symlink())
    return found


def recorded_calls(root: Path, models: set[str]) -> Callable[[], list[tuple[str, str]]]:
    """The calls to ``models`` that the ledger in ``root`` records, (task key, state) each."""
    def read() -> list[tuple[str, str]]:
        if not (root / LEDGER_NAME).is_file():
            return []
        with contextlib.closing(sqlite3.connect(f"{(root / LEDGER_NAME).as_uri()}?mode=ro", uri=True)) as db:
            try:
                rows = db.execute("SELECT task_key, model, state FROM paid_calls ORDER BY created_at").fetchall()
            except sqlite3.OperationalError:  # no call recorded yet
                return []
        return [(key, state) for key, model, state in rows if model in models]
    return read


def refused_prompts(path: Path, count: int) -> Callable[[], Callable[[], None]]:
    """Put the emulator's refused word in ``count`` prompts of the prompt file ``path``; the fix
    writes them back as they were (the user rewords them)."""
    def fail() -> Callable[[], None]:
        kept = path.read_bytes()
        texts = json.loads(kept)
        for text in texts[1:1 + 3 * count:3]:
            text["text"] += " BLOCKED_PROMPT"
        write_records(path, texts)
        return lambda: path.write_bytes(kept)
    return fail


def a_folder_at(path: Path) -> Callable[[], Callable[[], None]]:
    """A folder where the image ``path`` is to be written; the fix removes it."""
    def fail() -> Callable[[], None]:
        path.mkdir(parents=True)
        return path.rmdir
    return fail


def unreadable(path: Path) -> Callable[[], Callable[[], None]]:
    """The input image ``path`` made unreadable; the fix puts it back."""
    def fail() -> Callable[[], None]:
        kept = path.read_bytes()
        path.write_bytes(b"not an image")
        return lambda: path.write_bytes(kept)
    return fail


def replaced(command: list[str], option: str, value: str) -> list[str]:
    """``command`` with ``option``'s value replaced."""
    changed = list(command)
    changed[changed.index(option) + 1] = value
    return changed


def settled_openai(server, answer_s: float = 0.0) -> Callable[[], None]:
    """Wait until the emulator has read what was sent to it, then has recorded nothing new for a
    while: it records a request once it has answered it, ``answer_s`` (its latency) after reading it."""
    port = urlsplit(server.base_url).port
    quiet_s = 0.3 + 3 * answer_s

    def settle() -> None:
        deadline = time.monotonic() + 30
        seen, since = -1, time.monotonic()
        while True:
            assert time.monotonic() < deadline, "the emulator never read and answered what was sent to it"
            if bytes_unread_by(port) or len(server.requests) != seen:
                seen, since = len(server.requests), time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.01)
    return settle


@contextlib.contextmanager
def styles_openai(folder: Path, checkpoint: Path) -> Iterator[Run]:
    prompts = write_records(folder / "prompts.json", records(12))
    out = folder / "out"
    latency_s = 0.2
    with emulator(latency_s=latency_s) as server:
        command = [*STYLES, "--prompts", str(prompts), "--output", str(out), "--style", "cartoon", "realistic",
                   "--concurrency", "4", "--model", PRICED_MODEL, "--allow-retired", *CHEAP]
        unit = price(PRICED_MODEL, "1024x1024", "low")
        yield Run(command, replaced(command, "--size", "7x7"), files(out / "images" / "by_style", "*.png"), 24,
                  drawing=None, paid_calls=lambda: len(generations(server)), settle=settled_openai(server, latency_s),
                  billed_usd=lambda: unit * sum(r.status == 200 for r in generations(server)), unit_usd=unit,
                  ledger_root=out, fail_some=refused_prompts(prompts, 2),
                  env=emulator_env(server))


@contextlib.contextmanager
def styles_flux2(folder: Path, checkpoint: Path) -> Iterator[Run]:
    prompts = write_records(folder / "prompts.json", records(12))
    out = folder / "out"
    command = [*STYLES, "--prompts", str(prompts), "--output", str(out), "--style", "cartoon", "realistic",
               "--backend", "flux2", "--flux_ckpt", str(checkpoint), "--size", f"{SIZE}x{SIZE}",
               "--flux-steps", str(STEPS)]
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    yield Run(command, replaced(command, "--size", "60x60"), files(out / "images" / "by_style", "*.png"), 24, drawing=1,
              loads_a_model=True, ledger_root=out,
              fail_some=a_folder_at(out / "images" / "by_style" / "cartoon" / "wikipedia_004_cartoon.png"), env=env)


@contextlib.contextmanager
def instructions_local(folder: Path, checkpoint: Path) -> Iterator[Run]:
    sample_inputs(folder, questions=12)
    out = folder / "generated_images"
    command = [*INSTRUCTIONS, "--predicted_instructions_root", str(folder / "predicted_instructions"),
               "--image_root", str(folder), "--output_root", str(out), "--flux_ckpt", str(checkpoint),
               "--device", "cpu", "--num_gpus", "2", "--height", str(SIZE), "--width", str(SIZE),
               "--num_inference_steps", str(STEPS), "--planning_model", PLANNER]
    bad = replaced(command, "--planning_model", "Planer-7B")  # a typo
    # 2 workers x batch 1, and the image each may still be writing: a worker writes a batch's images
    # while it draws the next batch (imggen.pipelines.instructions.render)
    yield Run(command, bad, files(out, "*.png"), 21, drawing=4, loads_a_model=True,
              ledger_root=out, fail_some=unreadable(folder / "datasets" / "eval" / "spatial" / "images" / "b.png"))


@contextlib.contextmanager
def instructions_ray(folder: Path, checkpoint: Path) -> Iterator[Run]:
    """The same job on Ray: the command joins the tests' Ray cluster (RAY_ADDRESS and its token, set by
    conftest.joins_the_ray_cluster), two CPU actors each loading the checkpoint."""
    assert "RAY_ADDRESS" in os.environ, "the Ray kind joins the tests' cluster (conftest.ray_cluster)"
    with instructions_local(folder, checkpoint) as local:
        yield dataclasses.replace(local, command=[*local.command, "--engine", "ray"],
                                  bad_command=[*local.bad_command, "--engine", "ray"])


@contextlib.contextmanager
def trainset_replicate(folder: Path, checkpoint: Path) -> Iterator[Run]:
    source = folder / "source.png"
    source.write_bytes(source_image_bytes())
    out = folder / "runs"
    with running_services(grid_latency_s=0.3, upscale_latency_s=0.3) as services:
        command = [*TRAINSET, "--source", str(source), "--user-id", "u1", "--actor-id", "a1", "--target", "30",
                   "--output", str(out), "--judge", "hash", "--storage", "local"]
        bad = replaced(command, "--source", str(folder / "no-such-source.png"))
        replicate = services.replicate

        def settle() -> None:
            wait_until_creates_are_answered(replicate)
        yield Run(command, bad, files(out, "training-image*.jpg"), 30, drawing=None,
                  paid_calls=lambda: sum(replicate.counts.created.values()), settle=settle,
                  billed_usd=replicate.counts.billed_usd,
                  unit_usd=replicate_models()[FLUX_KONTEXT_PRO].price_usd_per_prediction,
                  ledger_root=out / "u1" / "a1", calls_per_task=2,  # a grid, then the upscale of its tile
                  recorded_calls=recorded_calls(out / "u1" / "a1", set(replicate_models())),
                  fail_some=a_folder_at(out / "u1" / "a1" / "training-image5.jpg"),
                  env={**os.environ, **services.environment()})


# Grids are drawn 0.15 s apart (not 0.01 s: STEPS), and the job needs more of them than the first
# grids requested together, so a pause after the first grid leaves grids to draw even when the
# first ones finish together on a loaded machine.
GRID_STEPS, TRAINSET_TARGET = 24, 40


@contextlib.contextmanager
def trainset_local(folder: Path, checkpoint: Path) -> Iterator[Run]:
    source = folder / "source.png"
    source.write_bytes(source_image_bytes())
    out = folder / "runs"
    command = [*TRAINSET, "--source", str(source), "--user-id", "u1", "--actor-id", "a1",
               "--target", str(TRAINSET_TARGET), "--output", str(out), "--local", "--flux_ckpt", str(checkpoint),
               "--flux-size", str(3 * SIZE), "--flux-steps", str(GRID_STEPS)]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OPENAI_", "REPLICATE_", "AWS_"))}
    yield Run(command, replaced(command, "--source", str(folder / "no-such-source.png")),
              files(out, "training-image*.jpg"), TRAINSET_TARGET, drawing=None, loads_a_model=True,
              ledger_root=out / "u1" / "a1",
              fail_some=a_folder_at(out / "u1" / "a1" / "training-image5.jpg"), env=env)


@contextlib.contextmanager
def styles_batch(folder: Path, checkpoint: Path) -> Iterator[Run]:
    prompts = write_records(folder / "prompts.json", records(12))
    out = folder / "out"
    with emulator(batch=BatchEmulatorConfig(line_s=0.05)) as server:
        command = [*STYLES, "--prompts", str(prompts), "--output", str(out), "--style", "cartoon", "realistic",
                   "--mode", "batch", "--batch-size", "4", "--poll-seconds", "0.05", *CHEAP]
        yield Run(command, replaced(command, "--size", "7x7"), files(out / "images" / "by_style", "*.png"), 24,
                  drawing=None, paid_calls=lambda: sum(server.batches.submitted.values()),
                  settle=settled_openai(server), ledger_root=out, fail_some=refused_prompts(prompts, 2),
                  env=emulator_env(server))


KINDS: dict[str, Callable[[Path, Path], contextlib.AbstractContextManager[Run]]] = {
    "styles-openai": styles_openai,
    "styles-flux2": styles_flux2,
    "instructions-local": instructions_local,
    "instructions-ray": instructions_ray,
    "trainset-replicate": trainset_replicate,
    "trainset-local": trainset_local,
    "styles-batch": styles_batch,
}
