"""Captions of training images: ``training-imageN.txt`` beside each image and ``metadata.jsonl``, in S3 and in a
folder, loaded back with the real ``datasets`` library; from the grid's descriptions or the vision model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from bs4 import BeautifulSoup
from PIL import Image

from imggen.demo.report import write_report
from imggen.demo.tour import STAGES
from imggen.engine.ledger import Ledger
from imggen.pipelines.trainset import TrainingDataGenerator, job_root
from imggen.pipelines.trainset.cli import main as trainset
from imggen.storage.stores import owner_prefix
from trainset_fixtures import BUCKET, services, source_file  # noqa: F401 - fixtures

USER, ACTOR = "me", "hero"


def load_imagefolder(folder: Path, tmp_path: Path, monkeypatch) -> list[dict]:
    """The folder's images with their ``metadata.jsonl`` columns, as the README loads them. ``data_files="*"``
    is needed: the names ``training-image*`` make ``datasets`` take the folder for a split named by its files,
    and a split's files must include ``metadata.jsonl``."""
    import datasets  # here, not at collection, which every test process does

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = datasets.load_dataset("imagefolder", data_dir=str(folder), data_files="*",
                                   cache_dir=str(tmp_path / f"hf-cache-{folder.name}"))
    assert list(loaded) == ["train"]
    return sorted(loaded["train"], key=lambda row: row["text"])


def subjects(root: Path) -> dict[str, str]:
    """What each training image's grid asked its tile to show, by training-image key."""
    with Ledger(root) as ledger, Ledger(root, table="grids") as grids:
        found = {}
        for key in ledger.keys("done"):
            where = ledger.task(key)["provenance"]
            found[key] = grids.task(f"grid-{where['grid']}")["payload"]["subjects"][where["tile"]]["text"]
    return found


def chat_requests(services) -> int:
    return len([r for r in services.openai.requests if r.path == "/v1/chat/completions"])


def same_pixels(image: Image.Image, data: bytes | Path) -> bool:
    with Image.open(data) as stored:
        return np.array_equal(np.asarray(image.convert("RGB")), np.asarray(stored.convert("RGB")))


def test_captions_from_the_descriptions_sit_beside_the_images_in_s3_and_load_with_datasets(
        services, source_file, tmp_path, monkeypatch):  # noqa: F811
    made = TrainingDataGenerator(work_dir=tmp_path / "runs", judge="hash", upscaler="lanczos", trigger_word="ohwx")
    made.target_training_images = 5
    assert made.generate_training_data(str(source_file), USER, ACTOR)["total_training_images"] == 5
    root = job_root(tmp_path / "runs", USER, ACTOR)
    wanted = {key: f"ohwx, {subject}" for key, subject in subjects(root).items()}
    assert len(wanted) == 5 and len(set(wanted.values())) == 5

    s3, prefix = services.s3(), owner_prefix(USER, ACTOR)
    download = tmp_path / "downloaded"
    download.mkdir()
    for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")["Contents"]:
        (download / Path(item["Key"]).name).write_bytes(s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read())
    for key, caption in wanted.items():
        assert (download / f"{key}.txt").read_text(encoding="utf-8") == caption
        head = s3.head_object(Bucket=BUCKET, Key=f"{prefix}/{key}.txt")
        assert head["ContentType"] == "text/plain; charset=utf-8"
    lines = [json.loads(line) for line in (download / "metadata.jsonl").read_text().splitlines()]
    in_slot_order = sorted(wanted, key=lambda key: int(key.removeprefix("training-image")))
    assert lines == [{"file_name": f"{key}.jpg", "text": wanted[key]} for key in in_slot_order]
    assert chat_requests(services) == 0  # description captions and the hash judge ask no model

    rows = load_imagefolder(download, tmp_path, monkeypatch)
    assert [row["text"] for row in rows] == sorted(wanted.values())
    by_caption = {caption: key for key, caption in wanted.items()}
    for row in rows:
        assert same_pixels(row["image"], download / f"{by_caption[row['text']]}.jpg")


def test_gpt_captions_are_asked_once_per_tile_and_a_local_run_folder_loads_as_an_imagefolder(
        services, source_file, tmp_path, monkeypatch, capsys):  # noqa: F811
    def run(target: int) -> int:
        return trainset(["--source", str(source_file), "--user-id", USER, "--actor-id", ACTOR, "--target", str(target),
                         "--storage", "local", "--judge", "hash", "--upscaler", "lanczos", "--caption", "gpt",
                         "--trigger-word", "sks person", "--output", str(tmp_path / "runs")])

    services.openai.fail_next("server_error")  # the first caption request meets a 500: that image is tried again
    assert run(3) == 0
    assert chat_requests(services) == 4  # one caption per training image, and the 500; the judge is the hash one
    assert run(3) == 0 and chat_requests(services) == 4  # nothing new to caption
    assert run(4) == 0 and chat_requests(services) == 5
    capsys.readouterr()
    root = job_root(tmp_path / "runs", USER, ACTOR)
    captions = {i: (root / f"training-image{i}.txt").read_text(encoding="utf-8") for i in range(1, 5)}
    for caption in captions.values():  # the emulated vision model names what it sees
        assert caption.startswith("sks person, A ") and " picture in mostly " in caption, caption
    asked = [r.prompt for r in services.openai.requests if r.path == "/v1/chat/completions"]
    assert all("caption" in prompt for prompt in asked)
    assert len({caption.removeprefix("sks person, ") for caption in captions.values()}) >= 2  # it looked

    # the run folder itself (with its grids/ and upscales/) loads as the four training images
    rows = load_imagefolder(root, tmp_path, monkeypatch)
    assert sorted(row["text"] for row in rows) == sorted(captions.values())


def test_the_demo_report_shows_each_training_image_with_its_caption(services, source_file, tmp_path):  # noqa: F811
    demo = tmp_path / "demo-output"
    assert trainset(["--source", str(source_file), "--user-id", "demo-user", "--actor-id", "demo-actor", "--target",
                     "4", "--storage", "local", "--judge", "hash", "--upscaler", "lanczos", "--trigger-word", "ohwx",
                     "--output", str(demo / "trainset")]) == 0
    stage = next(stage for stage in STAGES if stage.output == "trainset")
    page = BeautifulSoup(write_report(demo, [(stage, demo / "notebooks" / stage.notebook)]).read_text(),
                         "html.parser")
    figures = page.select("div.captions figure")
    folder = job_root(demo / "trainset", "demo-user", "demo-actor")
    assert len(figures) == 4
    for index, figure in enumerate(figures, start=1):
        assert figure.img["src"] == str((folder / f"training-image{index}.jpg").relative_to(demo))
        assert figure.figcaption.get_text() == (folder / f"training-image{index}.txt").read_text(encoding="utf-8")
        assert figure.figcaption.get_text().startswith("ohwx, ")
