"""From the inputs to the task list: one task per instruction, with a stable key, a seed and its output path.

A question's images are ``img_0.png .. img_{n-1}.png`` in its folder; a question without
instructions gets an empty folder. Each image's seed is derived from (run seed, dataset, question
id, instruction index) and the folder's round (:mod:`~imggen.engine.seeds`), so an image's pixels do not depend on which worker made it, in which
order, or on the planning model (two planning models' images of one question share their noise).

Skipping existing images is the engine's resume: a task whose key is done in the ledger, or whose
file is already a valid image, is not generated again. Each folder is a scope of
:mod:`~imggen.engine.rounds`: the ledger keeps the settings its images were made with (checkpoint,
steps, size, seed), and a rerun with other settings is refused. ``--no_skip_existing`` (or
``--new-round``) starts a new *round* for each folder in the plan: the round is recorded in the
ledger before the ledger's plan, the tasks get new keys (``...png#round2``), and the ledger keeps the
earlier rounds' records as they were. Old images are not deleted: each is replaced (atomically) when
its new one is made, and a file on disk stands for a task of a round only if its provenance names
that task's key (:func:`made_for`), so a run killed at any point, even while planning, never takes an
old image for a new one. An interrupted regeneration continues on a plain rerun with the same
settings (which keeps the current round); giving ``--no_skip_existing`` again starts yet another round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ...engine.errors import CannotStart
from ...engine.ledger import recorded_rounds
from ...engine.rounds import Round, choose_round, round_key
from ...engine.seeds import image_seed
from ...engine.tasks import Task
from ...storage import paths
from ...storage.atomic import is_valid_image
from ...storage.provenance import read_provenance
from .inputs import RESULTS_FILE, BadRecord, Question, read_questions
from .layout import RESERVED_NAMES, Group




@dataclass
class Entry:
    """One question of one folder, in input order; ``question`` is None for a bad record with an id."""

    question_id: object
    question: Question | None
    keys: tuple[str, ...] = ()


@dataclass
class Plan:
    root: Path
    generation_model: str
    seed: int
    height: int | None
    width: int | None
    regenerate: bool
    groups: dict[Group, list[Entry]] = field(default_factory=dict)
    bad_records: list[BadRecord] = field(default_factory=list)
    rounds: dict[str, Round] = field(default_factory=dict)  # folder prefix -> its round in this run
    records: int = 0  # lines read from the results files, good and bad

    @property
    def missing_images(self) -> list[BadRecord]:
        """The records skipped because a source image they name is not there."""
        return [record for record in self.bad_records if record.missing_image is not None]

    @property
    def image_count(self) -> int:
        return sum(len(entry.keys) for entries in self.groups.values() for entry in entries)

    def tasks(self) -> Iterator[Task]:
        """The tasks, in input order. Consumed by the runner inside the folder lock, so the side
        effect here (empty folders) happens only in the run that holds the folder."""
        for group, entries in self.groups.items():
            for entry in entries:
                if entry.question is None:
                    continue
                folder = group.question_folder(self.root, entry.question_id)
                folder.mkdir(parents=True, exist_ok=True)
                yield from self._question_tasks(group, entry, folder)

    def _question_tasks(self, group: Group, entry: Entry, folder: Path) -> Iterator[Task]:
        question = entry.question
        for index, (instruction, key) in enumerate(zip(question.instructions, entry.keys)):
            image_path = group.image_path(entry.question_id, index)
            absolute = self.root / image_path
            payload = {
                "key": key,
                "path": str(absolute),
                "prompt": instruction,
                "references": list(question.image_paths),
                "seed": image_seed(self.seed, question.dataset, str(entry.question_id), index,
                                   round_number=self.rounds[group.prefix].number),
                "height": self.height,
                "width": self.width,
                "source": question.source,
            }
            yield Task(key, payload, outputs=(image_path,))


def made_for(root: Path, task: Task) -> bool:
    """Whether the image on disk can be taken as ``task``'s result: it decodes and, for a task of a
    regeneration round, it was made for that very key (not left from an earlier round)."""
    path = root / task.outputs[0]
    if not is_valid_image(path):
        return False
    if task.key == task.outputs[0]:  # round 0: any valid image is the seed's "existing image"
        return True
    return read_provenance(path).get("key") == task.key


def planning_model_names(predicted_root: Path, chosen: str | None) -> list[str]:
    """The planning model given, or every folder under the predictions root (sorted).

    A chosen model without its ``results.jsonl`` cannot start: the message names the file looked
    for and the planning models that are there."""
    if chosen is not None:
        if not paths.is_existing_file(predicted_root / chosen / RESULTS_FILE):
            raise CannotStart(f"no planning model {chosen!r}: {predicted_root / chosen / RESULTS_FILE} does not exist "
                              f"({_known_models(predicted_root)})")
        return [chosen]
    if not predicted_root.is_dir():
        raise FileNotFoundError(f"{predicted_root} is not a folder of planning-model predictions")
    return sorted(child.name for child in predicted_root.iterdir() if child.is_dir() and not child.name.startswith("."))


def _known_models(predicted_root: Path) -> str:
    if not predicted_root.is_dir():
        return f"{predicted_root} is not a folder; set --predicted_instructions_root"
    names = planning_model_names(predicted_root, None)
    return f"planning models in {predicted_root}: {', '.join(names)}" if names else f"{predicted_root} has none"


def check_image_root(plan: Plan, image_root: Path) -> str | None:
    """A line saying how many records name source images missing under ``image_root`` (None if none).

    When most do (more than half of the records, and at least one), the root is wrong rather than a
    few files: that is :class:`CannotStart`, before any model is loaded."""
    missing = plan.missing_images
    if not missing:
        return None
    where = f"under --image_root {image_root.absolute()}"
    example = missing[0].missing_image
    note = f"{len(missing)} of {plan.records} records name source images missing {where} (e.g. {example})"
    if 2 * len(missing) > plan.records:
        raise CannotStart(f"{note}; set --image_root to the folder the records' image_paths are relative to")
    return note + "; those records are skipped"


def build_plan(
    *,
    predicted_root: Path,
    planning_models: list[str],
    output_root: Path,
    image_root: Path,
    generation_model: str,
    seed: int = 0,
    height: int | None = None,
    width: int | None = None,
    max_samples: int = -1,
    regenerate: bool = False,
    settings: dict | None = None,
) -> Plan:
    """Read every planning model's results.jsonl into folders of questions and their task keys.

    ``settings`` are what else defines an image besides the folder (checkpoint, steps ...); a folder
    whose recorded settings differ raises :class:`~imggen.engine.rounds.SettingsChanged` unless
    ``regenerate`` starts a new round."""
    root = output_root.resolve()
    plan = Plan(root, generation_model, seed, height, width, regenerate)
    recorded = recorded_rounds(root)
    wanted = {**(settings or {}), "seed": seed, "height": height, "width": width}
    for planning_model in planning_models:
        results = predicted_root / planning_model / RESULTS_FILE
        if not paths.is_existing_file(results):
            plan.bad_records.append(BadRecord(str(results), "file not found; planning model skipped"))
            continue
        for record in read_questions(results, image_root=image_root, max_samples=max_samples):
            plan.records += 1
            if isinstance(record, Question) and paths.safe_name(record.dataset) in RESERVED_NAMES:
                record = BadRecord(record.source, f"dataset name {record.dataset!r} is reserved in the output root")
            if isinstance(record, BadRecord):
                plan.bad_records.append(record)
                if record.dataset is None or paths.safe_name(record.dataset) in RESERVED_NAMES:
                    continue
                group = Group(record.dataset, planning_model, generation_model)
                plan.groups.setdefault(group, []).append(Entry(record.question_id, None))
                continue
            group = Group(record.dataset, planning_model, generation_model)
            if group.prefix not in plan.rounds:
                plan.rounds[group.prefix] = choose_round(str(group.folder(root)), recorded.get(group.prefix), wanted,
                                                         new_round=regenerate)
            round_number = plan.rounds[group.prefix].number
            keys = tuple(
                round_key(group.image_path(record.question_id, index), round_number)
                for index in range(len(record.instructions))
            )
            plan.groups.setdefault(group, []).append(Entry(record.question_id, record, keys))
    return plan
