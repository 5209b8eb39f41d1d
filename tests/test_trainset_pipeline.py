"""The training-set job end to end with the real replicate, openai and boto3 clients against local servers."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sqlite3
import urllib.request
from pathlib import Path

from PIL import Image

from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO, TOPAZ_IMAGE_UPSCALE
from imggen.engine.ledger import Ledger
from imggen.pipelines.trainset import ReplicateService, TrainingDataGenerator, job_root
from imggen.pipelines.trainset.cli import main as trainset_main
from imggen.pipelines.trainset.tile_book import TileBook
from imggen.storage.stores import owner_prefix
from imggen.storage.paths import safe_name
from trainset_fixtures import (  # noqa: F401 - fixtures
    BUCKET, OPENAI_KEY, REPLICATE_TOKEN, overlapping, running_services, services, source_file, source_image_bytes,
    use_services,
)

USER, ACTOR = "user/../1", "actor 7"


def generator(tmp_path: Path, **options) -> TrainingDataGenerator:
    return TrainingDataGenerator(debug_dir=tmp_path / "debug", work_dir=tmp_path / "runs", **options)


def grid_records(tmp_path: Path) -> dict[str, dict]:
    with Ledger(job_root(tmp_path / "runs", USER, ACTOR), table="grids") as ledger:
        return {key: ledger.task(key) for status in ("done", "failed", "pending") for key in ledger.keys(status)}


def test_twenty_images_in_s3_from_parallel_grids_and_a_rerun_pays_for_nothing(monkeypatch, source_file, tmp_path):
    # grids that take longer than the spacing of Replicate's creates (0.1 s at 600/min) overlap
    with running_services(grid_latency_s=0.5) as services:
        use_services(services, monkeypatch, tmp_path)
        _twenty_images_then_a_rerun(services, source_file, tmp_path)


def _twenty_images_then_a_rerun(services, source_file, tmp_path):
    result = generator(tmp_path).generate_training_data(str(source_file), USER, ACTOR)

    assert result["total_training_images"] == 20 and result["total_grids_generated"] == 3
    counts = services.replicate.counts
    assert counts.created[FLUX_KONTEXT_PRO] == 3 and counts.created[TOPAZ_IMAGE_UPSCALE] == 20
    grids = [p for p in services.replicate.predictions.values() if p.model == FLUX_KONTEXT_PRO]
    assert overlapping(grids) == 3  # the three grids were drawn at the same time
    assert len([r for r in services.openai.requests if r.path == "/v1/chat/completions"]) == 3

    prefix = owner_prefix(USER, ACTOR)
    assert prefix == f"{safe_name(USER)}/{safe_name('actor 7')}" and ".." not in prefix.split("/")
    s3 = services.s3()
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    stored = [f"{prefix}/training-image{i}.{kind}" for i in range(1, 21) for kind in ("jpg", "txt")]
    assert keys == sorted([*stored, f"{prefix}/metadata.jsonl"])  # each image with its caption
    for index, url in enumerate(result["training_image_urls"], start=1):
        key = f"{prefix}/training-image{index}.jpg"
        assert url == f"{services.s3_endpoint}/{BUCKET}/{key}"
        head = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert head["ContentType"] == "image/jpeg"
        assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
        assert body == (tmp_path / "debug" / f"training-image{index}.jpg").read_bytes()
        with Image.open(io.BytesIO(body)) as image:
            assert image.format == "JPEG"

    chosen = {(r["provenance"]["grid"], r["provenance"]["tile"]) for r in _slot_records(tmp_path)}
    assert len(chosen) == 20  # twenty different tiles
    debug = sorted(p.name for p in (tmp_path / "debug").iterdir())
    assert debug == sorted([f"grid{n}.jpg" for n in (1, 2, 3)] + [f"training-image{i}.jpg" for i in range(1, 21)])
    root = job_root(tmp_path / "runs", USER, ACTOR)
    stats = json.loads((root / "processing_stats.json").read_text())
    assert stats["successful_downloads"] == 20 and stats["failed_downloads"] == 0

    again = generator(tmp_path).generate_training_data(str(source_file), USER, ACTOR)
    assert again == result
    assert counts.created[FLUX_KONTEXT_PRO] == 3 and counts.created[TOPAZ_IMAGE_UPSCALE] == 20
    assert len([r for r in services.openai.requests if r.path == "/v1/chat/completions"]) == 3


def _slot_records(tmp_path: Path) -> list[dict]:
    with Ledger(job_root(tmp_path / "runs", USER, ACTOR)) as ledger:
        return [ledger.task(key) for key in ledger.keys("done")]


def test_a_bigger_target_later_reuses_the_spare_tiles_and_continues_the_rotation(services, source_file, tmp_path):
    made = generator(tmp_path)
    made.target_training_images = 5
    first = made.generate_training_data(str(source_file), USER, ACTOR)
    assert (first["total_grids_generated"], first["total_training_images"]) == (1, 5)
    made.target_training_images = 12
    second = made.generate_training_data(str(source_file), USER, ACTOR)
    assert (second["total_grids_generated"], second["total_training_images"]) == (2, 12)
    assert second["training_image_urls"][:5] == first["training_image_urls"]
    subjects = [s["text"] for r in grid_records(tmp_path).values() for s in r["payload"]["subjects"]]
    assert len(subjects) == 18 == len(set(subjects))  # no subject repeated across the two runs


def as_before_grids_joined_the_ledger(root: Path) -> None:
    """Move the grids of ``root``'s ledger back into ``grids/ledger.sqlite`` and which image got which tile into
    ``grids/tile_assignments.json``, as earlier versions kept them."""
    Ledger(root / "grids").close()  # its tables, empty
    db = sqlite3.connect(root / "ledger.sqlite", isolation_level=None)
    db.execute("ATTACH DATABASE ? AS old", (str(root / "grids" / "ledger.sqlite"),))
    db.execute("INSERT INTO old.tasks SELECT * FROM grids")
    db.execute("DROP TABLE grids")
    assigned = {str(slot): [grid, tile] for grid, tile, slot in db.execute("SELECT grid, tile, slot FROM tiles")}
    db.execute("DROP TABLE tiles")
    db.close()
    (root / "grids" / "tile_assignments.json").write_text(json.dumps({"assigned": assigned, "rejected": []}))


def test_grids_and_tiles_kept_apart_by_an_earlier_version_are_reused_not_drawn_again(services, source_file,
                                                                                          tmp_path):
    made = generator(tmp_path)
    made.target_training_images = 5
    first = made.generate_training_data(str(source_file), USER, ACTOR)
    root = job_root(tmp_path / "runs", USER, ACTOR)
    as_before_grids_joined_the_ledger(root)
    made.target_training_images = 9  # the first grid's nine tiles: no grid is drawn
    second = made.generate_training_data(str(source_file), USER, ACTOR)
    assert second["total_training_images"] == 9 and second["training_image_urls"][:5] == first["training_image_urls"]
    assert services.replicate.counts.created[FLUX_KONTEXT_PRO] == 1
    assert list(grid_records(tmp_path)) == ["grid-1"]
    assert not (root / "grids" / "ledger.sqlite").exists() and (root / "grids" / "ledger.sqlite.moved").is_file()
    assert (root / "grids" / "tile_assignments.json.moved").is_file()


def test_grids_only_as_many_as_needed_when_tiles_repeat(monkeypatch, source_file, tmp_path):
    # Two near-duplicate pairs per grid: the vision model keeps 5 of 9 tiles, so 20 images need 4 grids:
    # 3 at once (they could give 27), then exactly one more.
    with running_services(near_duplicates=2) as started:
        use_services(started, monkeypatch, tmp_path)
        result = generator(tmp_path, grid_concurrency=2).generate_training_data(str(source_file), USER, ACTOR)
        grids = [p for p in started.replicate.predictions.values() if p.model == FLUX_KONTEXT_PRO]
    assert result["total_training_images"] == 20 and result["total_grids_generated"] == 4 == len(grids)
    assert overlapping(grids) == 2  # bounded by grid_concurrency
    for record in grid_records(tmp_path).values():
        assert record["provenance"]["unique_tiles"] == [2, 3, 4, 5, 6]


def test_when_the_judge_finds_no_unique_tile_the_corners_and_centre_are_used(monkeypatch, source_file, tmp_path):
    with running_services(tile_threshold=255.0) as started:  # every tile "looks like" every other
        use_services(started, monkeypatch, tmp_path)
        made = generator(tmp_path)
        made.target_training_images = 10
        result = made.generate_training_data(str(source_file), USER, ACTOR)
    assert (result["total_training_images"], result["total_grids_generated"]) == (10, 2)
    for record in grid_records(tmp_path).values():
        assert record["provenance"]["judge_fallback"] is True
        assert record["provenance"]["unique_tiles"] == [0, 2, 4, 6, 8]
    assert {r["provenance"]["tile"] for r in _slot_records(tmp_path)} == {0, 2, 4, 6, 8}


def test_failed_aborted_and_refused_predictions_are_replaced(services, source_file, tmp_path):
    services.replicate.script(FLUX_KONTEXT_PRO, "failed", "aborted")
    services.replicate.script(TOPAZ_IMAGE_UPSCALE, "failed", "safety")
    made = generator(tmp_path)
    made.target_training_images = 12
    result = made.generate_training_data(str(source_file), USER, ACTOR)

    assert result["total_training_images"] == 12
    counts = services.replicate.counts
    assert counts.finished["failed"] == 3 and counts.finished["aborted"] == 1
    assert counts.paid[FLUX_KONTEXT_PRO] == result["total_grids_generated"] == 2
    assert counts.created[FLUX_KONTEXT_PRO] == 4  # two that ended badly, two that made grids
    with TileBook(job_root(tmp_path / "runs", USER, ACTOR)) as tiles:
        assigned, refused = tiles.read()
    assert len(refused) == 1  # the tile the safety filter refused is never used again
    assert not refused & set(assigned.values())


def test_upscales_run_concurrently_up_to_the_bound(monkeypatch, source_file, tmp_path):
    with running_services(upscale_latency_s=0.6) as services:  # 6 creates' spacing: 4 is the bound
        use_services(services, monkeypatch, tmp_path)
        made = generator(tmp_path, upscale_concurrency=4)
        made.target_training_images = 9
        assert made.generate_training_data(str(source_file), USER, ACTOR)["total_training_images"] == 9
    upscales = [p for p in services.replicate.predictions.values() if p.model == TOPAZ_IMAGE_UPSCALE]
    assert len(upscales) == 9 and overlapping(upscales) == 4


def test_the_run_stops_with_a_clear_message_when_max_generation_attempts_is_spent(services, source_file, tmp_path,
                                                                                 caplog):
    made = generator(tmp_path)
    made.target_training_images, made.max_generation_attempts = 12, 1
    result = made.generate_training_data(str(source_file), USER, ACTOR)
    assert (result["total_training_images"], result["total_grids_generated"]) == (9, 1)
    assert services.replicate.counts.created[FLUX_KONTEXT_PRO] == 1
    assert "Only generated 9/12 images" in caplog.text and "max_generation_attempts" in caplog.text
    made.max_generation_attempts = 10  # the rerun continues with the nine it has
    assert made.generate_training_data(str(source_file), USER, ACTOR)["total_training_images"] == 12
    assert services.replicate.counts.created == {FLUX_KONTEXT_PRO: 2, TOPAZ_IMAGE_UPSCALE: 12}


def test_a_429_on_create_is_waited_out(services, source_file, tmp_path):
    services.replicate.reject_creates(2, 429, retry_after_s=1)
    made = generator(tmp_path)
    made.target_training_images = 4
    result = made.generate_training_data(str(source_file), USER, ACTOR)
    assert result["total_training_images"] == 4
    creates = [r for r in services.replicate.requests if r.method == "POST" and r.path.endswith("/predictions")]
    assert [r.status for r in creates[:2]] == [429, 429]
    stats = json.loads((job_root(tmp_path / "runs", USER, ACTOR) / "processing_stats.json").read_text())
    assert stats["rate_limit_hits"] >= 1


def test_the_cli_stores_locally_with_the_hash_judge_and_lanczos(services, source_file, tmp_path, capsys):
    code = trainset_main([
        "--source", str(source_file), "--user-id", USER, "--actor-id", ACTOR, "--target", "6", "--grid", "4",
        "--storage", "local", "--judge", "hash", "--upscaler", "lanczos", "--output", str(tmp_path / "runs"),
    ])
    assert code == 0
    printed = capsys.readouterr().out.split()
    folder = job_root(tmp_path / "runs", USER, ACTOR)
    assert printed == [(folder / f"training-image{i}.jpg").resolve().as_uri() for i in range(1, 7)]
    assert services.replicate.counts.created == {FLUX_KONTEXT_PRO: 1}  # 16 tiles: one grid is enough
    assert not [r for r in services.openai.requests if r.path == "/v1/chat/completions"]
    grid = next(p for p in services.replicate.predictions.values())
    assert "4x4 grid of 16" in grid.input["prompt"]
    with Image.open(folder / "training-image1.jpg") as image, Image.open(folder / "grids" / "grid1.jpg") as drawn:
        assert image.width in (2 * (drawn.width // 4), 2 * (drawn.width // 4 + 1))


async def test_the_seed_api_works_inside_a_running_event_loop(services, tmp_path):
    # as in a notebook cell: a loop is running while the synchronous API is called
    made = generator(tmp_path)
    made.target_training_images = 3
    data_uri = "data:image/png;base64," + base64.b64encode(source_image_bytes()).decode()
    result = made.generate_training_data(data_uri, USER, ACTOR)
    assert result["total_training_images"] == 3


def test_the_seed_replicate_service_returns_output_urls(services):
    service = ReplicateService()
    source_b64 = base64.b64encode(source_image_bytes()).decode()
    grid_url = service.generate_grid_with_flux_kontext("a 3x3 grid of cats", source_b64)
    upscaled_url = service.upscale_with_topaz(source_b64, upscale_factor="2x")
    request = urllib.request.Request(upscaled_url, headers={"Authorization": f"Bearer {REPLICATE_TOKEN}"})
    with urllib.request.urlopen(request) as response, Image.open(io.BytesIO(response.read())) as image:
        assert image.size == (512, 512)
    assert grid_url.startswith(services.replicate.base_url) and grid_url.endswith(".jpg")


def test_no_key_appears_in_the_run_files(services, source_file, tmp_path):
    made = generator(tmp_path)
    made.target_training_images = 2
    made.generate_training_data(str(source_file), USER, ACTOR)
    for path in (tmp_path / "runs").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert REPLICATE_TOKEN.encode() not in data and OPENAI_KEY.encode() not in data, path
