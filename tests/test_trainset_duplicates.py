"""Near-duplicates across grids and runs: a tile that repeats one already kept for the actor is refused
before its upscale, so Replicate is never asked (or paid) to upscale it."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO, TOPAZ_IMAGE_UPSCALE
from imggen.engine.ledger import Ledger
from imggen.images.hashes import TileHash
from imggen.images.tiles import tile_pngs
from imggen.pipelines.trainset import TrainingDataGenerator, job_root
from imggen.pipelines.trainset.cli import build_parser
from imggen.pipelines.trainset.tile_book import KeptTiles, TileBook
from trainset_fixtures import running_services, source_file, source_image_bytes, use_services  # noqa: F401 - fixture

USER, ACTOR = "me", "hero"


def generator(tmp_path: Path, target: int, **options) -> TrainingDataGenerator:
    made = TrainingDataGenerator(work_dir=tmp_path / "runs", **options)
    made.target_training_images = target
    return made


def kept_tiles(tmp_path: Path) -> set[tuple[int, int]]:
    """(grid, tile) of every finished training image."""
    with Ledger(job_root(tmp_path / "runs", USER, ACTOR)) as ledger:
        return {(r["provenance"]["grid"], r["provenance"]["tile"]) for r in map(ledger.task, ledger.keys("done"))}


def upscaled_pictures(replicate) -> list[bytes]:
    """The tiles Replicate was asked to upscale, as sent."""
    return [base64.b64decode(p.input["image"].partition(",")[2])
            for p in replicate.predictions.values() if p.model == TOPAZ_IMAGE_UPSCALE]


def grid_tiles(tmp_path: Path, number: int) -> list[bytes]:
    return tile_pngs((job_root(tmp_path / "runs", USER, ACTOR) / "grids" / f"grid{number}.jpg").read_bytes(), 3)


def rejected(tmp_path: Path) -> list[list[int]]:
    with TileBook(job_root(tmp_path / "runs", USER, ACTOR)) as tiles:
        return sorted([ref.grid, ref.tile] for ref in tiles.read()[1])


def test_a_later_grid_repeating_kept_tiles_is_refused_before_any_upscale(monkeypatch, source_file, tmp_path):
    # every grid after the first nearly copies the first grid's tiles 0 and 1, which the judge of that
    # later grid cannot see (they are unique inside it)
    with running_services(repeated_tiles=2) as started:
        use_services(started, monkeypatch, tmp_path)
        result = generator(tmp_path, 12, grid_concurrency=1).generate_training_data(str(source_file), USER, ACTOR)
        layouts = list(started.replicate.grids.values())
        counts, upscaled = started.replicate.counts, upscaled_pictures(started.replicate)
    assert [layout.repeated for layout in layouts] == [(), (0, 1)]
    assert (result["total_training_images"], result["total_grids_generated"]) == (12, 2)
    assert counts.created[TOPAZ_IMAGE_UPSCALE] == 12 == len(upscaled)  # no upscale for the two repeats
    assert kept_tiles(tmp_path) == {(1, t) for t in range(9)} | {(2, 2), (2, 3), (2, 4)}
    repeats = grid_tiles(tmp_path, 2)[:2]
    assert not [picture for picture in upscaled if picture in repeats]
    assert sorted(rejected(tmp_path)) == [[2, 0], [2, 1]]
    with TileBook(job_root(tmp_path / "runs", USER, ACTOR)) as tiles:
        stored = tiles.kept()
    assert sorted(stored) == sorted(f"upscale-{grid}-{tile}" for grid, tile in kept_tiles(tmp_path))


def test_a_repeat_of_a_tile_kept_in_an_earlier_run_is_refused_in_the_next(monkeypatch, source_file, tmp_path):
    with running_services(repeated_tiles=2) as started:
        use_services(started, monkeypatch, tmp_path)
        first = generator(tmp_path, 3).generate_training_data(str(source_file), USER, ACTOR)
        assert first["total_grids_generated"] == 1
        assert kept_tiles(tmp_path) == {(1, 0), (1, 1), (1, 2)}
        # the next run uses the six spare tiles of grid 1, then draws grid 2, whose tiles 0 and 1 repeat
        # tiles kept in the first run
        result = generator(tmp_path, 12).generate_training_data(str(source_file), USER, ACTOR)
        counts, upscaled = started.replicate.counts, upscaled_pictures(started.replicate)
    assert (result["total_training_images"], result["total_grids_generated"]) == (12, 2)
    assert counts.created == {FLUX_KONTEXT_PRO: 2, TOPAZ_IMAGE_UPSCALE: 12}
    assert kept_tiles(tmp_path) == {(1, t) for t in range(9)} | {(2, 2), (2, 3), (2, 4)}
    assert not [picture for picture in upscaled if picture in grid_tiles(tmp_path, 2)[:2]]


def test_the_threshold_is_configurable(monkeypatch, source_file, tmp_path):
    with running_services() as started:  # no repeats drawn: the closest distinct tiles are 12 bits apart
        use_services(started, monkeypatch, tmp_path)
        made = generator(tmp_path, 9, dup_threshold=64)  # 64 bits: every tile looks like every other
        made.max_generation_attempts = 2
        result = made.generate_training_data(str(source_file), USER, ACTOR)
        assert started.replicate.counts.created == {FLUX_KONTEXT_PRO: 2, TOPAZ_IMAGE_UPSCALE: 1}
    assert result["total_training_images"] == 1 and len(kept_tiles(tmp_path)) == 1
    assert build_parser().parse_args(["--source", "s", "--user-id", "u", "--actor-id", "a"]).dup_threshold == 6
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--source", "s", "--user-id", "u", "--actor-id", "a", "--dup-threshold", "-1"])


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_kept_tiles_admit_one_of_two_look_alikes_at_once_and_remember_it_in_the_next_run(tmp_path):
    tile = Image.open(io.BytesIO(source_image_bytes())).convert("RGB")
    look_alike = _png(ImageEnhance.Brightness(tile).enhance(1.04))
    other = _png(tile.rotate(90).transpose(Image.Transpose.FLIP_LEFT_RIGHT).point(lambda v: 255 - v))
    with TileBook(tmp_path) as book:
        kept = KeptTiles(book)
        answers = dict(zip("ab", await asyncio.gather(kept.admit("a", _png(tile)), kept.admit("b", look_alike))))
        (admitted,) = [key for key, twin in answers.items() if twin is None]
        (refused,) = [key for key in answers if key != admitted]
        assert answers[refused] == admitted
        assert await kept.admit("c", other) is None
    with TileBook(tmp_path) as book:  # the next run
        again = KeptTiles(book)
        assert await again.admit(admitted, b"not even read: a kept tile is no repeat of itself") is None
        assert await again.admit("d", look_alike if admitted == "a" else _png(tile)) == admitted
        again.forget(admitted)
    with TileBook(tmp_path) as book:
        assert await KeptTiles(book).admit("d", look_alike) is None


def test_the_hashes_an_earlier_version_kept_in_kept_tiles_json_are_moved_into_the_ledger_once(tmp_path):
    tile = Image.open(io.BytesIO(source_image_bytes())).convert("RGB")
    (tmp_path / "kept_tiles.json").write_text(json.dumps({"threshold": 6, "tiles": {"upscale-1-0": str(TileHash.of(tile))}}))
    with TileBook(tmp_path) as book:
        assert list(book.kept()) == ["upscale-1-0"]
    assert not (tmp_path / "kept_tiles.json").exists() and (tmp_path / "kept_tiles.json.moved").exists()
    with TileBook(tmp_path) as book:
        assert list(book.kept()) == ["upscale-1-0"]
