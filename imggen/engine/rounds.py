"""Rounds: which settings made the outputs of a folder, and starting over with other settings.

A *scope* is a set of outputs made with one set of settings: a style-matrix output folder, one
instructions folder (dataset, planning model, generation model), one actor's training set. Its
settings are what defines an output (model, size, quality, steps, prompt template, storage ...),
never what only paces a run (concurrency, rpm, budget, verbosity), which may change between a run
and its resume. The ledger keeps each scope's round number and settings (:meth:`Ledger.rounds`).

A rerun compares its settings with the recorded ones before anything is sent
(:func:`choose_round`): the same settings continue the round; other settings are refused with
:class:`SettingsChanged`, naming each one old -> new, unless a new round is asked for. A task of
round N > 0 gets the key ``key#roundN``, so the ledger keeps the earlier rounds' records (and what
they were billed) beside the new ones, and nothing made for an earlier round is taken for its task.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .errors import CannotStart

ROUND_MARK = "#round"
NEW_ROUND_HINT = "rerun with the same settings to continue, or pass --new-round to start a new round"


def round_key(key: str, number: int) -> str:
    """The key of ``key``'s task in round ``number`` (round 0 keeps the plain key)."""
    return key if number == 0 else f"{key}{ROUND_MARK}{number}"


def split_round(key: str) -> tuple[str, int]:
    """``("a.png", 2)`` for ``"a.png#round2"``; ``(key, 0)`` for a plain key."""
    base, _, number = key.partition(ROUND_MARK)
    return base, int(number or 0)


def latest_rounds(records: Iterable[dict]) -> list[dict]:
    """Of ledger records in plan order, the latest round's record of each task (later rounds replace)."""
    latest: dict[str, dict] = {}
    for record in records:
        latest[split_round(record["key"])[0]] = record
    return list(latest.values())


@dataclass(frozen=True)
class Round:
    """A scope's round number and the settings its outputs are made with."""

    number: int
    settings: dict[str, Any] = field(default_factory=dict)


class SettingsChanged(CannotStart):
    """A run's settings differ from those the scope's outputs were made with."""

    def __init__(self, scope: str, changes: list[tuple[str, Any, Any]]) -> None:
        listed = ", ".join(f"{name} {_shown(old)} → {_shown(new)}" for name, old, new in changes)
        super().__init__(f"{scope} was made with other settings ({listed}); {NEW_ROUND_HINT}")
        self.changes = changes


def _shown(value: Any) -> str:
    return "default" if value is None else str(value)


def changed_settings(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(name, old, new)`` for each setting both name and give different values."""
    return [(name, recorded[name], value) for name, value in wanted.items()
            if name in recorded and recorded[name] != value]


def choose_round(scope: str, recorded: Round | None, settings: Mapping[str, Any], *, new_round: bool) -> Round:
    """The round a run works in: the recorded one when the settings match (settings it did not name
    before are added), the next one with ``new_round``; raises :class:`SettingsChanged` otherwise.
    A scope with nothing recorded starts at round 0 (round 1 when a new round is asked for)."""
    settings = json.loads(json.dumps(dict(settings), default=str))  # as the ledger gives them back
    if recorded is None:
        return Round(1 if new_round else 0, settings)
    if new_round:
        return Round(recorded.number + 1, settings)
    changes = changed_settings(recorded.settings, settings)
    if changes:
        raise SettingsChanged(scope, changes)
    return Round(recorded.number, {**recorded.settings, **settings})
