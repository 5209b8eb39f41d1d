"""The training-set building blocks: tiles, subjects and their rotation, prompts, judges, upscalers, storage."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageEnhance

from imggen.backends.image_download import read_image_source
from imggen.backends.openai_images import OpenAIImageBackend
from imggen.backends.openai_models import DEFAULT_VISION_MODEL
from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO
from imggen.backends.replicate_predictions import ReplicatePredictions
from imggen.backends.replicate_responses import PredictionEnded
from imggen.backends.tile_judges import GptTileJudge, HashTileJudge, fallback_tiles, judge_grid
from imggen.backends.upscalers import LanczosUpscaler, make_upscaler
from imggen.emulators.openai_server import OpenAIEmulatorConfig, openai_emulator_in_thread
from imggen.engine.errors import ErrorKind, TaskError
from imggen.engine.ledger import LEDGER_NAME
from imggen.images.tiles import split_tiles, tile_boxes
from imggen.pipelines.trainset.descriptions import DescriptionPool, grid_subjects
from imggen.pipelines.trainset.prompts import build_grid_prompt
from imggen.engine.sync_call import run_sync
from imggen.storage.s3 import S3Store
from imggen.storage.stores import LocalFolderStore, owner_prefix
from trainset_fixtures import BUCKET, moto_s3, s3_client, source_image_bytes


# -- tiles ------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(width=st.integers(1, 3000), height=st.integers(1, 3000), grid=st.integers(1, 8))
def test_tiles_cover_the_image_exactly_with_the_remainder_spread(width, height, grid):
    if width < grid or height < grid:
        with pytest.raises(ValueError):
            tile_boxes(width, height, grid)
        return
    boxes = tile_boxes(width, height, grid)
    assert len(boxes) == grid * grid
    assert sum((r - l) * (b - t) for l, t, r, b in boxes) == width * height  # no gap, no overlap (with the below)
    for index, (left, top, right, bottom) in enumerate(boxes):
        row, col = divmod(index, grid)
        assert right > left and bottom > top
        if col:
            assert left == boxes[index - 1][2]  # abuts its left neighbour
        if row:
            assert top == boxes[index - grid][3]  # abuts the tile above
    widths = {r - l for l, _, r, _ in boxes}
    heights = {b - t for _, t, _, b in boxes}
    assert max(widths) - min(widths) <= 1 and max(heights) - min(heights) <= 1
    assert boxes[-1][2:] == (width, height)


def test_split_tiles_returns_the_pixels_of_each_cell():
    image = Image.new("RGB", (10, 7))
    for index, box in enumerate(tile_boxes(10, 7, 3)):
        ImageDraw.Draw(image).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(index * 20, 0, 0))
    for index, tile in enumerate(split_tiles(image, 3)):
        assert {colour for _, colour in tile.getcolors()} == {(index * 20, 0, 0)}


@pytest.mark.parametrize("grid, expected", [(3, [0, 2, 4, 6, 8]), (4, [0, 3, 10, 12, 15]), (5, [0, 4, 12, 20, 24]),
                                            (1, [0])])
def test_fallback_is_the_corners_and_the_centre(grid, expected):
    assert fallback_tiles(grid) == expected


# -- subjects and prompts -------------------------------------------------------------------------
def test_the_builtin_pool_has_63_subjects_in_7_categories_of_9():
    pool = DescriptionPool.builtin()
    assert len(pool) == 63 and len(set(pool)) == 63
    assert len(pool.categories) == 7
    assert all(sum(item.category == c for item in pool) == 9 for c in pool.categories)


def test_grids_never_repeat_a_subject_until_the_pool_is_used():
    pool = DescriptionPool.builtin()
    first = grid_subjects(pool, 1, 9)
    assert len({item.category for item in first}) == 7  # a grid mixes every category
    rest = [item for number in range(2, 8) for item in grid_subjects(pool, number, 9)]
    assert sorted(map(str, first + rest)) == sorted(map(str, pool))  # 7 grids of 9 use each subject once
    after = grid_subjects(pool, 8, 9)
    assert len(set(after)) == 9  # the next cycle starts over, still without a repeat inside a grid
    assert grid_subjects(pool, 8, 9) == after  # a grid's subjects depend on its number alone


def test_a_grid_across_the_end_of_the_pool_has_no_repeats():
    pool = DescriptionPool.from_mapping({"a": ["1", "2", "3"], "b": ["4", "5", "6", "7"]})
    straddling = grid_subjects(pool, 2, 4)  # 3 left in this cycle, one from the next
    assert len(set(straddling)) == 4


def test_a_custom_pool_replaces_the_builtin_one(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"categories": {"Robots": ["a tin robot", "a giant mech"], "Fish": ["a koi"]}}))
    pool = DescriptionPool.load(path)
    assert [item.text for item in pool] == ["a tin robot", "a giant mech", "a koi"]
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"Fish": ["a koi"]}).encode())  # saved with a byte-order mark
    assert [item.text for item in DescriptionPool.load(path)] == ["a koi"]
    path.write_text(json.dumps({"Robots": "not a list"}))
    with pytest.raises(ValueError, match="Robots"):
        DescriptionPool.load(path)


@pytest.mark.parametrize("grid", [3, 4, 5])
def test_the_prompt_names_the_grid_and_every_subject_in_order(grid):
    subjects = grid_subjects(DescriptionPool.builtin(), 1, grid * grid)
    prompt = build_grid_prompt(subjects, grid)
    assert f"{grid}x{grid} grid of {grid * grid}" in prompt
    positions = [prompt.index(item.text) for item in subjects]
    assert positions == sorted(positions)
    assert f"row {grid}, column {grid}" in prompt
    with pytest.raises(ValueError):
        build_grid_prompt(subjects[:-1], grid)


# -- judges ---------------------------------------------------------------------------------------
def grid_with_copies(grid: int, copies: dict[int, int], side: int = 64) -> bytes:
    """A grid of distinct drawn tiles where tile k (key) is a slightly brighter copy of tile v."""
    source = Image.open(io.BytesIO(source_image_bytes(side * grid)))
    tiles = []
    for index in range(grid * grid):
        if index in copies:
            tiles.append(ImageEnhance.Brightness(tiles[copies[index]]).enhance(1.04))
            continue
        tile = source.rotate(index * 37, expand=False).resize((side, side))
        ImageDraw.Draw(tile).ellipse((index * 5 % side, 8, index * 5 % side + 24, 40), fill=(index * 25, 90, 200))
        tiles.append(tile)
    canvas = Image.new("RGB", (side * grid, side * grid))
    for index, tile in enumerate(tiles):
        canvas.paste(tile, ((index % grid) * side, (index // grid) * side))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_the_hash_judge_keeps_one_of_each_group_of_look_alikes(tmp_path):
    judge, calls = HashTileJudge(), ReplicatePredictions(tmp_path).answers
    assert await judge.unique_tiles(grid_with_copies(3, {}), 3, key="grid-1", calls=calls) == list(range(9))
    assert await judge.unique_tiles(grid_with_copies(3, {7: 1, 8: 0}), 3, key="grid-2", calls=calls) == list(range(7))
    assert await judge.unique_tiles(grid_with_copies(4, {15: 3}), 4, key="grid-3", calls=calls) == list(range(15))
    assert paid_calls(tmp_path) == []  # it pays for nothing


def paid_calls(root) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(root / LEDGER_NAME)) as db:
        return db.execute("SELECT task_key, model, price, state, note FROM paid_calls ORDER BY created_at").fetchall()


async def test_the_gpt_judge_asks_the_vision_model_books_each_answer_and_falls_back_when_it_finds_none(tmp_path):
    book = ReplicatePredictions(tmp_path)
    with openai_emulator_in_thread(OpenAIEmulatorConfig(api_key="sk-judge-test-0123456")) as server:
        backend = OpenAIImageBackend(api_key="sk-judge-test-0123456", base_url=server.base_url)
        judge = GptTileJudge(backend)
        try:
            found = await judge.unique_tiles(grid_with_copies(3, {8: 0}), 3, key="grid-1", calls=book.answers)
            flat = io.BytesIO()
            Image.new("RGB", (90, 90), (120, 120, 120)).save(flat, format="PNG")  # nine identical tiles
            verdict = await judge_grid(judge, flat.getvalue(), 3, key="grid-2", calls=book.answers)
        finally:
            await backend.aclose()
    assert found == [1, 2, 3, 4, 5, 6, 7]
    assert verdict.fallback and verdict.tiles == [0, 2, 4, 6, 8]
    assert [r.path for r in server.requests] == ["/v1/chat/completions"] * 2
    # gpt-4.1-mini has no known price: booked with none (counted as unpriced), never as $0.00
    assert paid_calls(tmp_path) == [("grid-1", DEFAULT_VISION_MODEL, None, "used", None),
                                    ("grid-2", DEFAULT_VISION_MODEL, None, "wasted", "nothing usable in the answer")]
    assert verdict.cost == 0.0


# -- upscalers, sources, the book of predictions ------------------------------------------------------------------------
async def test_lanczos_doubles_the_tile(tmp_path):
    made = await LanczosUpscaler().upscale(source_image_bytes(50), key="k")
    with Image.open(io.BytesIO(made.data)) as image:
        assert (image.format, image.size) == ("JPEG", (100, 100))


def test_a_model_file_upscaler_without_spandrel_says_how_to_install_it(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "spandrel", None)  # as if it were not installed
    with pytest.raises(RuntimeError, match="pip install spandrel"):
        make_upscaler(str(tmp_path / "4x-model.pth"))


async def test_sources_from_a_path_a_data_uri_and_bad_input(tmp_path):
    data = source_image_bytes(64)
    (tmp_path / "s.png").write_bytes(data)
    assert await read_image_source(tmp_path / "s.png") == data
    assert await read_image_source("data:image/png;base64," + base64.b64encode(data).decode()) == data
    for bad in (tmp_path / "missing.png", "data:image/png;base64,bm90IGFuIGltYWdl"):
        with pytest.raises(TaskError) as caught:
            await read_image_source(bad)
        assert caught.value.kind is ErrorKind.FATAL


async def test_the_journal_polls_a_created_prediction_again_and_replaces_only_one_that_ended(tmp_path):
    book = ReplicatePredictions(tmp_path)
    created, resumed = [], []

    async def create(on_created):
        on_created(f"p{len(created)}")
        created.append(1)
        raise TaskError(ErrorKind.TRANSIENT, "HTTP 503 while polling", connection_error=True)

    async def resume(model, prediction_id):
        resumed.append(prediction_id)
        if prediction_id == "p0" and len(resumed) < 3:
            raise TaskError(ErrorKind.TRANSIENT, "HTTP 502 while polling")
        if prediction_id == "p0":
            raise PredictionEnded(ErrorKind.TRANSIENT, "prediction p0 failed", billed=False)
        return prediction_id

    with pytest.raises(PredictionEnded):  # polled twice more on the same id, then it turned out failed
        await book.collect_or_create("grid-1", FLUX_KONTEXT_PRO, resume, create)
    assert resumed == ["p0", "p0", "p0"] and len(created) == 1 and book.pending("grid-1") is None
    assert await book.collect_or_create("grid-1", FLUX_KONTEXT_PRO, resume, create) == "p1"
    assert book.pending("grid-1").call_id == "p1"  # kept until its result is saved
    book.saved("grid-1")
    assert book.pending("grid-1") is None and len(created) == 2
    book.close()


async def test_the_journal_does_not_create_again_after_a_prediction_refused_for_good(tmp_path):
    book = ReplicatePredictions(tmp_path, collect_deadline_s=0.0)  # no time to poll again within one call
    created = []

    async def create(on_created):
        on_created(f"p{len(created)}")
        created.append(1)
        raise TaskError(ErrorKind.TRANSIENT, "the connection dropped while polling", connection_error=True)

    async def resume(model, prediction_id):
        raise PredictionEnded(ErrorKind.PERMANENT, "prediction p0: the image is larger than allowed", billed=True)

    with pytest.raises(TaskError):  # created, then left open for a later call to collect
        await book.collect_or_create("upscale-1-0", FLUX_KONTEXT_PRO, resume, create)
    assert book.pending("upscale-1-0").call_id == "p0"
    with pytest.raises(PredictionEnded) as refused:
        await book.collect_or_create("upscale-1-0", FLUX_KONTEXT_PRO, resume, create)
    assert refused.value.kind is ErrorKind.PERMANENT and len(created) == 1 and book.pending("upscale-1-0") is None
    book.close()


# -- storage -----------------------------------------------------------------------------------------
async def test_local_store_keeps_untrusted_ids_inside_its_root(tmp_path):
    store = LocalFolderStore(tmp_path, "../../etc", "a/b")
    stored = await store.put("training-image1.jpg", b"jpeg", "image/jpeg")
    assert stored.path.read_bytes() == b"jpeg"
    assert tmp_path.resolve() in stored.path.resolve().parents
    assert stored.url.startswith("file://")
    assert owner_prefix("../../etc", "a/b").count("/") == 1


async def test_s3_store_uploads_with_a_verified_checksum_and_content_type():
    with moto_s3() as endpoint:
        store = S3Store(BUCKET, prefix=owner_prefix("user 1", "actor"), endpoint_url=endpoint, region="us-east-1",
                        access_key="AKIATEST", secret_key="secret-test-value")
        data = source_image_bytes(32)
        stored = await store.put("training-image1.png", data, "image/png")
        head = s3_client(endpoint).head_object(Bucket=BUCKET, Key=stored.key, ChecksumMode="ENABLED")
        body = s3_client(endpoint).get_object(Bucket=BUCKET, Key=stored.key)["Body"].read()
    assert stored.key == f"{owner_prefix('user 1', 'actor')}/training-image1.png"
    assert stored.url == f"{endpoint}/{BUCKET}/{stored.key}"
    assert head["ContentType"] == "image/png"
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode() == stored.sha256_b64
    assert body == data


async def test_s3_store_reports_a_missing_bucket_as_fatal():
    with moto_s3() as endpoint:
        store = S3Store("no-such-bucket-here", endpoint_url=endpoint, region="us-east-1",
                        access_key="AKIATEST", secret_key="secret-test-value")
        with pytest.raises(TaskError) as caught:
            await store.put("x.jpg", b"x", "image/jpeg")
    assert caught.value.kind is ErrorKind.FATAL and "NoSuchBucket" in caught.value.message


def test_s3_store_refuses_an_object_that_does_not_match_what_was_sent():
    class Tampering:  # S3 answering with another object's head
        meta = None

        def put_object(self, **kwargs):
            return {}

        def head_object(self, **kwargs):
            return {"ChecksumSHA256": "AAAA", "ContentLength": 1, "ContentType": "image/jpeg", "ETag": '"x"'}

    store = S3Store(BUCKET, client=Tampering())
    with pytest.raises(TaskError) as caught:
        asyncio.run(store.put("x.jpg", b"abc", "image/jpeg"))
    assert caught.value.kind is ErrorKind.TRANSIENT and "did not verify" in caught.value.message


# -- the synchronous API inside a running loop --------------------------------------------------------
async def test_run_sync_works_inside_a_running_event_loop():
    async def answer():
        await asyncio.sleep(0)
        return asyncio.get_running_loop()

    outer = asyncio.get_running_loop()
    inner = run_sync(answer)  # would raise "asyncio.run() cannot be called from a running event loop"
    assert inner is not outer
