"""Grids and upscales in flight with the defaults: the create pace x each model's latency, halved by a
throttled create, never past a pinned number, and never more grids than the missing tiles need."""

from __future__ import annotations

import asyncio
from pathlib import Path

from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO, TOPAZ_IMAGE_UPSCALE
from imggen.engine.events import Event, TaskFinished, TaskRetrying
from imggen.pipelines.trainset import TrainingDataGenerator
from imggen.pipelines.trainset.cli import build_parser
from trainset_fixtures import overlapping, running_services, source_file, use_services  # noqa: F401 - fixtures

USER, ACTOR = "u1", "a1"
CREATES_PER_S = 600 / 60  # Replicate's documented create limit


class PartsSeen:
    """A reporter keeping, per event, the grids' and upscales' (running, target) and the pace line."""

    def __init__(self, on_event=None) -> None:
        self.seen: list[tuple[Event, dict[str, tuple[int, int]]]] = []
        self.on_event = on_event

    def __call__(self, event: Event) -> None:
        self.seen.append((event, {part.name: (part.running, part.target) for part in event.progress.parts}))
        if self.on_event is not None:
            self.on_event(event)

    def targets(self, name: str) -> list[int]:
        return [parts[name][1] for _, parts in self.seen if name in parts]


def build(tmp_path: Path, target: int, reporter: PartsSeen, *, actor: str = ACTOR, **options):
    made = TrainingDataGenerator(work_dir=tmp_path / "runs", judge="gpt", storage="s3", **options)
    made.target_training_images = target
    return asyncio.run(made.arun(str(tmp_path / "source.png"), USER, actor, reporters=[reporter]))


def predictions(started, model: str) -> list:
    return [p for p in started.replicate.predictions.values() if p.model == model]


def test_the_upscale_target_grows_with_the_latency(monkeypatch, source_file, tmp_path):
    found = {}
    for latency in (0.2, 0.8):
        with running_services(upscale_latency_s=latency) as started:
            use_services(started, monkeypatch, tmp_path)
            seen = PartsSeen()
            result = build(tmp_path, 9, seen, actor=f"at {latency} s")
            upscales = predictions(started, TOPAZ_IMAGE_UPSCALE)
        assert len(result.images) == 9 and len(upscales) == 9
        found[latency] = seen.targets("upscales")[-1], overlapping(upscales)
    print(f"(last upscale target, most upscales at once) by latency: {found}")
    (short_target, short_overlap), (long_target, long_overlap) = found[0.2], found[0.8]
    # Little's law at 10 creates/s: 0.2 s in flight needs about 2, 0.8 s about 8 (the target is twice
    # that plus one, for the queue at the limiter: 5 and 17); creates are spaced, never sent as a burst.
    # A loaded machine answers later than the emulator's latency, which raises both targets (14 and 22
    # once beside the heaviest tests), so the growth is asserted as at least half of the 12 expected.
    assert CREATES_PER_S * 0.8 * 2 <= long_target <= 40 and long_target - short_target >= 6
    assert short_overlap <= 4 and long_overlap >= 6


def test_a_throttled_create_halves_the_upscale_target(monkeypatch, source_file, tmp_path):
    with running_services(upscale_latency_s=0.8) as started:
        use_services(started, monkeypatch, tmp_path)

        asked: list[Event] = []

        def throttle_once(event: Event) -> None:  # the next create after the first upscale's answer
            if isinstance(event, TaskFinished) and not asked:
                asked.append(event)
                started.replicate.reject_creates(1, 429, retry_after_s=1, form="detail")

        seen = PartsSeen(throttle_once)
        result = build(tmp_path, 18, seen)
        counts = started.replicate.counts
    assert len(result.images) == 18 and counts.throttled == 1
    assert counts.created == {FLUX_KONTEXT_PRO: 2, TOPAZ_IMAGE_UPSCALE: 18}  # the throttled create paid nothing
    throttled = next(i for i, (event, _) in enumerate(seen.seen) if isinstance(event, TaskRetrying))
    before, after = seen.seen[throttled - 1][1]["upscales"][1], seen.seen[throttled][1]["upscales"][1]
    print(f"upscale target before the throttled create {before}, after {after}")
    assert before >= CREATES_PER_S * 0.8 * 2 and after <= before // 2 + 1


def test_creates_throttled_together_halve_the_target_once(monkeypatch, source_file, tmp_path):
    # the three grids' creates leave together (an account allowed 600,000 a minute) and all meet a 429:
    # one excess, one halving of the grids' target (from the 256 allowed before the first answer)
    with running_services() as started:
        use_services(started, monkeypatch, tmp_path)
        started.replicate.reject_creates(3, 429, retry_after_s=1, form="body")
        seen = PartsSeen()
        result = build(tmp_path, 20, seen, rpm=600_000)
        counts = started.replicate.counts
    assert len(result.images) == 20 and counts.throttled == 3 and counts.created[FLUX_KONTEXT_PRO] == 3
    after = {parts["grids"][1] for event, parts in seen.seen if isinstance(event, TaskRetrying)}
    assert after == {128}


def test_a_pinned_upscale_concurrency_is_never_exceeded(monkeypatch, source_file, tmp_path):
    with running_services(upscale_latency_s=0.6) as started:
        use_services(started, monkeypatch, tmp_path)
        seen = PartsSeen()
        result = build(tmp_path, 9, seen, upscale_concurrency=3)
        upscales = predictions(started, TOPAZ_IMAGE_UPSCALE)
    assert len(result.images) == 9 and overlapping(upscales) == 3
    assert set(seen.targets("upscales")) == {3} and max(running for running, _ in
                                                       (parts["upscales"] for _, parts in seen.seen)) <= 3


def test_auto_draws_every_grid_the_missing_tiles_need_at_once_and_no_more(monkeypatch, source_file, tmp_path):
    # 2x2 grids give 4 tiles each: 20 images need 5 grids, all drawn together (a fixed 4 drew them in two rounds)
    with running_services(grid_latency_s=0.8) as started:
        use_services(started, monkeypatch, tmp_path)
        seen = PartsSeen()
        made = TrainingDataGenerator(work_dir=tmp_path / "runs", judge="gpt", storage="s3", grid=2)
        result = asyncio.run(made.arun(str(tmp_path / "source.png"), USER, ACTOR, reporters=[seen]))
        grids = predictions(started, FLUX_KONTEXT_PRO)
    assert len(result.images) == 20 and result.total_grids_generated == 5 == len(grids)
    assert overlapping(grids) == 5
    line = seen.seen[-1][0].progress.pace
    assert "grids " in line and "upscales " in line and "limit 600/min" in line


def test_the_command_defaults_to_auto_and_takes_a_number():
    required = ["--source", "s.png", "--user-id", "u", "--actor-id", "a"]
    defaults = build_parser().parse_args(required)
    assert (defaults.grid_concurrency, defaults.upscale_concurrency, defaults.rpm) == ("auto", "auto", None)
    pinned = build_parser().parse_args([*required, "--grid-concurrency", "2", "--upscale-concurrency", "3"])
    assert (pinned.grid_concurrency, pinned.upscale_concurrency) == (2, 3)
