"""The security pass: keys stay out of every artifact, hostile names stay inside the output root,
and decompression bombs, non-images and oversized downloads are refused with a clear error.

Secrets: the style matrix (CLI and notebook under papermill) and the training set (CLI, S3) run
against the local emulators and a moto S3 with fake keys of 20+ characters, with scripted faults;
then every file they leave (PNG/JPEG metadata decoded, SQLite ledgers dumped, executed notebooks,
logs, stats, state, debug images), their terminal output, and every S3 object's bytes and head
are searched for each secret. A provider whose error message echoes the key in full is searched
the same way.

Hostile names (``../``, absolute paths, NUL, 5,000 characters) in sample ids, datasets, styles,
instruction records, planning-model names and training-set user and actor ids: the folder around
the output root is listed before and after, and nothing new may appear outside the root.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sqlite3
import struct
import subprocess
import sys
import threading
import uuid
import zlib
from pathlib import Path
from typing import Iterator, Sequence

import pytest
from aiohttp import web
from instructions_fixtures import noise_image, write_results  # noqa: F401 - the tiny checkpoint fixture
from PIL import Image
from styles_fixtures import API_KEY, SAMPLE_PROMPTS, emulator, generations, write_records
from trainset_fixtures import (
    AWS_KEY, AWS_SECRET, BUCKET, OPENAI_KEY, REPLICATE_TOKEN, running_services, source_image_bytes, use_services,
)

from imggen.backends.image_download import read_image_source
from imggen.engine.ledger import Ledger
from imggen.notebook.headless import execute_notebook
from imggen.pipelines.instructions import InstructionsOptions, run_instructions
from imggen.pipelines.instructions.plan import build_plan
from imggen.pipelines.trainset import TrainingDataGenerator

REPO = Path(__file__).resolve().parents[1]
STYLES_NOTEBOOK = REPO / "notebooks" / "01_style_matrix.ipynb"
FLUX_KONTEXT_PRO = "black-forest-labs/flux-kontext-pro"
LONG = 5000


# -- helpers: running the CLI, finding secrets, watching the file system ------------------------
def imggen(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """``imggen ARGS`` in a child process with exactly ``env`` (plus PATH and the like)."""
    base = {name: value for name, value in os.environ.items()
            if not name.startswith(("OPENAI_", "REPLICATE_", "AWS_"))}
    return subprocess.run([sys.executable, "-m", "imggen.cli", *args], cwd=cwd, env={**base, **env},
                          capture_output=True, text=True, timeout=180)


def readable_forms(path: Path) -> Iterator[bytes]:
    """A file's bytes, and what decoders read out of it (image metadata, SQLite rows)."""
    data = path.read_bytes()
    yield data
    with contextlib.suppress(Exception), Image.open(io.BytesIO(data)) as image:
        yield repr(image.info).encode("utf-8", "replace")
        yield repr(getattr(image, "text", {})).encode("utf-8", "replace")
        yield repr(dict(image.getexif())).encode("utf-8", "replace")
    if data.startswith(b"SQLite format 3"):
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            yield "\n".join(db.iterdump()).encode("utf-8", "replace")


def leaks(secrets: dict[str, str], folders: Sequence[Path] = (), texts: dict[str, str | bytes] | None = None,
          ) -> list[str]:
    """``where: secret name`` for every secret found in the files under ``folders`` or in ``texts``."""
    found = []
    sources: list[tuple[str, bytes]] = []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                sources.extend((str(path.relative_to(folder.parent)), form) for form in readable_forms(path))
    for label, text in (texts or {}).items():
        sources.append((label, text if isinstance(text, bytes) else text.encode("utf-8", "replace")))
    for label, data in sources:
        found.extend(f"{label}: {name}" for name, value in secrets.items() if value.encode() in data)
    return sorted(set(found))


def s3_texts(services) -> dict[str, bytes]:
    """Every object's bytes and head (metadata, headers) in the test bucket."""
    client = services.s3()
    texts = {}
    for listed in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        key = listed["Key"]
        texts[f"s3://{BUCKET}/{key}"] = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        head = client.head_object(Bucket=BUCKET, Key=key)
        texts[f"s3 head {key}"] = repr(head).encode()
    return texts


def snapshot(folder: Path) -> set[str]:
    """Every path under ``folder`` (folders too), relative to it."""
    found = set()
    for parent, folders, files in os.walk(folder):
        for name in folders + files:
            found.add(os.path.relpath(os.path.join(parent, name), folder))
    return found


def written_outside(folder: Path, root: Path, before: set[str]) -> list[str]:
    inside = os.path.relpath(root, folder)
    return sorted(p[:120] for p in snapshot(folder) - before if p != inside and not p.startswith(inside + os.sep))


def hostile_names(around: Path, marker: str) -> dict[str, str]:
    """Names that would escape a root three levels below ``around`` if used as path parts."""
    return {
        "dotdot": f"../../../{marker}",
        "deep-dotdot": "../" * 40 + f"tmp/{marker}",
        "absolute": str(around / f"abs-{marker}"),
        "nul": f"nul\x00{marker}",
        "long": "L" * LONG,
    }


def assert_nothing_escaped(around: Path, root: Path, before: set[str], marker: str) -> None:
    assert written_outside(around, root, before) == []
    assert not (Path("/tmp") / marker).exists()
    assert not any(marker in name for name in os.listdir(around.parent))


@contextlib.contextmanager
def serving(routes: list[web.RouteDef]) -> Iterator[str]:
    """An aiohttp server on 127.0.0.1 in a background thread; yields its base URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> web.AppRunner:
        app = web.Application()
        app.add_routes(routes)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int = 20_000) -> bytes:
    """A 1-bit black PNG of side x side pixels: ~50 KB on disk, 400 megapixels decoded."""
    row = b"\x00" * (1 + (side + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return bomb_png()


# -- keys never land anywhere -------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_style_matrix_and_its_notebook_leave_the_key_nowhere(tmp_path, monkeypatch):
    assert len(API_KEY) >= 20
    secrets = {"OPENAI_API_KEY": API_KEY}
    with emulator(monkeypatch, api_key=API_KEY, latency_s=0.01) as server:
        server.fail_next("server_error")  # an error message and a retry in the log and ledger
        run = imggen("styles", "--prompts", str(SAMPLE_PROMPTS), "--output", "cli-out", "--style", "cartoon", "anime",
                     "--max-samples", "1", "--size", "1024x1024", "--quality", "low",
                     env={"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": server.base_url}, cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        execute_notebook(
            str(STYLES_NOTEBOOK), str(tmp_path / "ran.ipynb"), cwd=str(tmp_path), kernel_name="python3",
            progress_bar=False, parameters={"prompts": str(SAMPLE_PROMPTS), "output": "notebook-out", "max_samples": 1,
                                            "styles": ["realistic"], "size": "1024x1024", "quality": "low"},
        )
        assert sum(r.status == 200 for r in generations(server)) == 8 + 4  # the key reached the server
    assert len(list((tmp_path / "cli-out").rglob("*.png"))) >= 8
    assert leaks(secrets, [tmp_path / "cli-out", tmp_path / "notebook-out"],
                 {"ran.ipynb": (tmp_path / "ran.ipynb").read_bytes(), "stdout": run.stdout, "stderr": run.stderr}) == []


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_training_set_leaves_no_secret_in_files_logs_or_s3(tmp_path, monkeypatch):
    secrets = {"REPLICATE_API_TOKEN": REPLICATE_TOKEN, "OPENAI_API_KEY": OPENAI_KEY,
               "AWS_ACCESS_KEY": AWS_KEY, "AWS_ACCESS_SECRET": AWS_SECRET}
    assert all(len(value) >= 20 for value in secrets.values())
    (tmp_path / "source.png").write_bytes(source_image_bytes())
    with running_services(grid_latency_s=0.05, upscale_latency_s=0.02) as services:
        services.replicate.script(FLUX_KONTEXT_PRO, "failed")  # a failed grid: its error is logged
        services.openai.fail_next("server_error")  # a failed judge call
        run = imggen("trainset", "--source", "source.png", "--user-id", "u1", "--actor-id", "a1", "--target", "4",
                     "--storage", "s3", "--judge", "gpt", "--upscaler", "topaz", "--debug-dir", "debug",
                     "--output", "runs", env=services.environment(), cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        objects = s3_texts(services)
    assert len([key for key in objects if key.startswith("s3://") and key.endswith(".jpg")]) == 4
    assert list((tmp_path / "debug").iterdir())
    assert leaks(secrets, [tmp_path / "runs", tmp_path / "debug"],
                 {"stdout": run.stdout, "stderr": run.stderr, **objects}) == []


ECHO = "refused the request of"


def echoing_routes(calls: list[str], status: int) -> list[web.RouteDef]:
    """A provider that refuses every call with the caller's credential in the message, in full."""

    async def echo(request: web.Request) -> web.Response:
        credential = request.headers.get("Authorization", "")
        calls.append(credential)
        message = f"{ECHO} {credential}"
        return web.json_response({"error": {"message": message, "type": "invalid_request_error", "code": "echo"},
                                  "detail": message, "title": message, "status": status}, status=status)

    return [web.route("*", "/{path:.*}", echo)]


@pytest.mark.slow
@pytest.mark.parametrize("provider, status", [("openai-styles", 401), ("openai-styles", 400),
                                              ("replicate-trainset", 401), ("replicate-trainset", 422)])
def test_an_error_that_echoes_the_key_is_redacted_everywhere(provider, status, tmp_path):
    (tmp_path / "source.png").write_bytes(source_image_bytes())
    calls: list[str] = []
    with serving(echoing_routes(calls, status)) as base_url:
        if provider == "openai-styles":
            secrets = {"OPENAI_API_KEY": API_KEY}
            run = imggen("styles", "--prompts", str(SAMPLE_PROMPTS), "--output", "out", "--style", "cartoon",
                         "--max-samples", "1", "--size", "1024x1024", "--quality", "low",
                         env={"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": f"{base_url}/v1"}, cwd=tmp_path)
        else:
            secrets = {"REPLICATE_API_TOKEN": REPLICATE_TOKEN}
            run = imggen("trainset", "--source", "source.png", "--user-id", "u", "--actor-id", "a", "--target", "2",
                         "--judge", "hash", "--upscaler", "lanczos", "--storage", "local", "--output", "out",
                         "--max-grids", "2", cwd=tmp_path,
                         env={"REPLICATE_API_TOKEN": REPLICATE_TOKEN, "REPLICATE_BASE_URL": base_url})
    assert run.returncode != 0, (run.stdout + run.stderr)[-2000:]
    assert calls and all(value in credential for credential in calls for value in secrets.values())
    logs = "".join(path.read_text(errors="replace") for path in (tmp_path / "out").rglob("run.log"))
    if status != 401 or provider.startswith("replicate"):  # these messages are passed on (redacted)
        assert ECHO in run.stdout + run.stderr + logs, (run.stderr + logs)[-2000:]
    assert leaks(secrets, [tmp_path / "out"], {"stdout": run.stdout, "stderr": run.stderr}) == []


# -- hostile names stay inside the output root --------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_hostile_datasets_sample_ids_and_styles_stay_inside_the_output_root(tmp_path):
    marker = f"escaped-{uuid.uuid4().hex[:8]}"
    names = hostile_names(tmp_path, marker)
    root = tmp_path / "a" / "b" / "out"
    root.parent.mkdir(parents=True)
    records = [{"dataset": name, "sample_id": "1", "text": f"a lighthouse ({kind} dataset)"}
               for kind, name in names.items()]
    records += [{"dataset": "plain", "sample_id": name, "text": f"a harbour ({kind} sample)"}
                for kind, name in names.items()]
    records += [{"dataset": "plain", "sample_id": ["not", "an", "id"], "text": "bad"},
                {"dataset": "plain", "text": "no id"}]
    prompts = write_records(tmp_path / "prompts.json", records)
    styles = tmp_path / "styles.json"
    styles.write_text(json.dumps({"styles": {name: "A drawing of {text}" for name in names.values()}}))
    before = snapshot(tmp_path)
    with emulator(api_key=API_KEY) as server:
        run = imggen("styles", "--prompts", str(prompts), "--styles", str(styles), "--output", str(root),
                     "--size", "1024x1024", "--quality", "low",
                     env={"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": server.base_url}, cwd=root.parent)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output[-3000:]  # every good record drawn; the two bad ones skipped, and said
    assert "skipped: 2 input record(s)" in output
    assert f"{prompts}, record {len(records) - 1}" in output and f"{prompts}, record {len(records)}" in output
    good = len(records) - 2
    assert len(list((root / "images" / "by_style").rglob("*.png"))) == good * len(names)
    assert len(list((root / "images" / "by_dataset").rglob("*.png"))) == good * len(names)
    listed = [json.loads(line)["file_name"] for line in (root / "images" / "metadata.jsonl").read_text().splitlines()]
    missing = [name[:100] for name in listed if not (root / "images" / name).is_file()]
    assert len(listed) == good * len(names) and missing == []  # the recorded names are the files' names
    assert_nothing_escaped(tmp_path, root, before, marker)


def planner_results(path: Path, records: list[dict | str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")


def one_question(dataset: str, question_id, image: str = "images/a.png", instructions: int = 1) -> dict:
    return {"id": question_id, "dataset": dataset, "image_paths": [image],
            "instructions": [f"move object {i} to the left" for i in range(instructions)]}


def question_folders(root: Path) -> list[Path]:
    """``{dataset}/{planning_model}/{generation_model}/{question_id}`` folders under ``root``."""
    return [path for path in root.glob("*/*/*/*") if path.is_dir()]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_hostile_datasets_ids_and_planning_models_stay_inside_the_output_root(tmp_path, klein):  # noqa: F811
    marker = f"escaped-{uuid.uuid4().hex[:8]}"
    names = hostile_names(tmp_path, marker)
    work = tmp_path / "a" / "b"
    root, predicted = work / "out", work / "predicted"
    noise_image(work / "images" / "a.png", 1)
    # a question without instructions still gets its (empty) folder: the names are tested without
    # paying for an image each; a few questions draw one, so the workers' writes are tested too
    records = [one_question(name, f"q-{kind}", instructions=int(kind == "dotdot")) for kind, name in names.items()]
    records += [one_question("plain", name, instructions=int(kind == "long")) for kind, name in names.items()]
    records += [one_question("ledger.sqlite", "reserved"), '{"id": 9, "dataset": broken json']
    results = predicted / "Planner-7B" / "results.jsonl"
    planner_results(results, records)
    # folder names a planning model may have on disk (not "..", "/" or NUL: no file system allows them)
    odd_planners = ["-rf planner", "planner; rm -rf ~", "planner\nwith newline", "p" * 255, "$(touch pwned)"]
    for planner in odd_planners:
        planner_results(predicted / planner / "results.jsonl",
                        [one_question("plain", "q", instructions=int(planner == "p" * 255))])
    # a planning model named with ../ reads a results file outside the predictions folder
    planner_results(work / f"{marker}-planner" / "results.jsonl", [one_question("plain", "q")])
    before = snapshot(tmp_path)

    def options(planning_model):
        return InstructionsOptions(
            planning_model=planning_model, flux_ckpt=klein, predicted_instructions_root=predicted, output_root=root,
            image_root=work, height=64, width=64, num_inference_steps=2, device="cpu", num_gpus=1)

    everyone = asyncio.run(run_instructions(options(None)))
    assert everyone.summary.progress.done == 3, everyone.summary
    bad = [str(record)[:300] for record in everyone.bad_records]
    assert any(f"{results}:{len(records) - 1}:" in text and "reserved" in text for text in bad), bad
    assert any(f"{results}:{len(records)}:" in text and "not valid JSON" in text for text in bad), bad
    escaping = asyncio.run(run_instructions(options(f"../{marker}-planner")))
    assert escaping.summary.progress.done == 1
    assert len(question_folders(root)) == len(names) * 2 + len(odd_planners) + 1
    assert len(list(root.rglob("img_0.png"))) == 4
    assert_nothing_escaped(tmp_path, root, before, marker)


@pytest.mark.parametrize("kind", ["long", "nul", "absolute-missing"])
def test_an_unusable_planning_model_name_is_a_clear_bad_record(kind, tmp_path):
    name = {"long": "P" * LONG, "nul": "planner\x00name", "absolute-missing": str(tmp_path / "nowhere")}[kind]
    plan = build_plan(predicted_root=tmp_path / "predicted", planning_models=[name], output_root=tmp_path / "out",
                      image_root=tmp_path, generation_model="flux2-klein-tiny")
    assert [record.message for record in plan.bad_records] == ["file not found; planning model skipped"]
    assert plan.image_count == 0 and not (tmp_path / "out").exists()


def test_an_overlong_or_nul_image_path_is_a_bad_record_naming_its_line(tmp_path):
    noise_image(tmp_path / "images" / "a.png", 1)
    results = write_results(tmp_path, "Planner", [
        one_question("plain", "long-path", "images/" + "x" * LONG + ".png"),
        one_question("plain", "nul-path", "images/a\x00.png"),
        one_question("plain", "fine"),
    ])
    plan = build_plan(predicted_root=tmp_path / "predicted_instructions", planning_models=["Planner"],
                      output_root=tmp_path / "out", image_root=tmp_path, generation_model="flux2-klein-tiny")
    sources = sorted(record.source for record in plan.bad_records)
    assert sources == [f"{results}:1", f"{results}:2"]
    assert all("image not found" in record.message for record in plan.bad_records)
    assert plan.image_count == 1


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_hostile_user_and_actor_ids_stay_inside_the_output_root_and_the_users_s3_prefix(tmp_path, monkeypatch):
    marker = f"escaped-{uuid.uuid4().hex[:8]}"
    names = hostile_names(tmp_path, marker)
    root = tmp_path / "a" / "b" / "out"
    root.mkdir(parents=True)
    source = tmp_path / "source.png"
    source.write_bytes(source_image_bytes())
    pairs = [("local", names["dotdot"], names["absolute"]), ("local", names["deep-dotdot"], names["nul"]),
             ("s3", names["long"], names["dotdot"]), ("s3", names["nul"], names["absolute"])]
    before = snapshot(tmp_path)
    with running_services(grid_latency_s=0.05, upscale_latency_s=0.02) as services:
        use_services(services, monkeypatch, root.parent)
        for storage, user, actor in pairs:
            generator = TrainingDataGenerator(work_dir=root, judge="hash", upscaler="lanczos", storage=storage)
            generator.target_training_images = 2
            made = generator.generate_training_data(str(source), user, actor)
            assert made["total_training_images"] == 2, storage
        keys = [o["Key"] for o in services.s3().list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert len([key for key in keys if key.endswith(".jpg")]) == 4  # and beside them their captions and metadata.jsonl
    for key in keys:
        parts = key.split("/")
        assert len(parts) == 3 and not key.startswith("/") and ".." not in parts and "\x00" not in key, key[:200]
        assert all(0 < len(part) <= 100 for part in parts), key[:200]
    assert_nothing_escaped(tmp_path, root, before, marker)


# -- bombs, non-images, oversized downloads -----------------------------------------------------
async def streamed(request: web.Request, chunks: list[bytes]) -> web.StreamResponse:
    """An image/png answer without a length, sent in ``chunks`` a few milliseconds apart (as a network would)."""
    response = web.StreamResponse(headers={"Content-Type": "image/png"})
    await response.prepare(request)
    with contextlib.suppress(ConnectionError, RuntimeError):  # the client may hang up early, as it should
        for chunk in chunks:
            await response.write(chunk)
            await asyncio.sleep(0.005)
        await response.write_eof()
    return response


def source_routes(bomb: bytes) -> list[web.RouteDef]:
    async def bomb_file(request):
        return web.Response(body=bomb, content_type="image/png")

    async def not_an_image(request):  # claims to be a PNG, is a web page
        return web.Response(body=b"<html><body>Not found</body></html>" * 20, content_type="image/png")

    async def oversized(request):  # 51 MiB, streamed without a length: the cap must stop the read
        return await streamed(request, [b"\x89PNG\r\n\x1a\n"] + [b"\x00" * (1 << 20)] * 51)

    return [web.get("/bomb.png", bomb_file), web.get("/page.png", not_an_image), web.get("/huge.png", oversized)]


SOURCE_PROBLEMS = {
    "bomb-file": ("bomb.png", ("bomb", "pixels")),
    "bomb-url": ("/bomb.png", ("bomb", "pixels")),
    "not-an-image-url": ("/page.png", ("not a readable image", "not an image")),
    "oversized-url": ("/huge.png", ("larger than",)),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", SOURCE_PROBLEMS)
def test_a_bad_training_set_source_is_refused_with_a_clear_error(case, bomb, tmp_path):
    where, words = SOURCE_PROBLEMS[case]
    (tmp_path / "bomb.png").write_bytes(bomb)
    with serving(source_routes(bomb)) as base_url:
        source = f"{base_url}{where}" if where.startswith("/") else where
        run = imggen("trainset", "--source", source, "--user-id", "u", "--actor-id", "a", "--target", "2",
                     "--judge", "hash", "--upscaler", "lanczos", "--storage", "local", "--output", "out",
                     # a dead endpoint: a refused source must stop the run before any provider call
                     env={"REPLICATE_API_TOKEN": REPLICATE_TOKEN, "REPLICATE_BASE_URL": "http://127.0.0.1:9"},
                     cwd=tmp_path)
    output = " ".join((run.stdout + run.stderr).split())
    assert run.returncode != 0
    assert "Traceback" not in output, output[-3000:]
    assert "source image" in output and any(word in output for word in words), output[-3000:]
    assert not list(tmp_path.rglob("training-image*"))


def test_a_large_source_image_sent_in_many_chunks_is_read_whole():
    """The control for the download cap: a valid 1 MB PNG streamed in 64 KiB pieces is accepted as it is."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (600, 600), os.urandom(600 * 600 * 3)).save(buffer, format="PNG")
    png = buffer.getvalue()

    async def chunked(request):
        return await streamed(request, [png[start:start + 65536] for start in range(0, len(png), 65536)])

    with serving([web.get("/large.png", chunked)]) as base_url:
        assert asyncio.run(read_image_source(f"{base_url}/large.png")) == png


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_bomb_or_non_image_conditioning_image_fails_its_question_and_the_others_go_on(
        tmp_path, bomb, klein):  # noqa: F811
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "bomb.png").write_bytes(bomb)
    (tmp_path / "images" / "page.png").write_bytes(b"<html>not an image</html>")
    noise_image(tmp_path / "images" / "a.png", 1)
    results = write_results(tmp_path, "Planner", [
        one_question("eval", "bomb", "images/bomb.png"),
        one_question("eval", "page", "images/page.png"),
        one_question("eval", "fine", "images/a.png"),
    ])
    root = tmp_path / "out"
    result = asyncio.run(run_instructions(InstructionsOptions(
        planning_model="Planner", flux_ckpt=klein, predicted_instructions_root=tmp_path / "predicted_instructions",
        output_root=root, image_root=tmp_path, height=64, width=64, num_inference_steps=2, device="cpu", num_gpus=1)))
    assert result.summary.progress.done == 1
    with Ledger(root) as ledger:
        failures = {row["key"].split("/")[-2]: row for row in ledger.failures()}
    assert set(failures) == {"bomb", "page"}
    assert failures["bomb"]["attempts"] == 1 and failures["bomb"]["error_kind"] == "permanent"
    assert f"{results}:1" in failures["bomb"]["error"] and "bomb" in failures["bomb"]["error"]
    assert f"{results}:2" in failures["page"]["error"] and "unreadable" in failures["page"]["error"]
    assert "bomb" in (root / "run.log").read_text()
    assert (root / "eval" / "Planner" / klein.name / "fine" / "img_0.png").is_file()
