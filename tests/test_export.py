"""``imggen export OUTPUT --to FORMAT DIR`` for the three pipelines, loaded back as the tools read them:
the real ``datasets`` and ``webdataset`` libraries, and sd-scripts' and diffusers' DreamBooth rules for
a folder (``N_name/`` with ``{stem}.txt`` captions; every file an image).

Each output folder is made by the real pipeline on a local backend (the OpenAI emulator, the tiny
FLUX.2 klein checkpoint on the CPU, the no-key training set); every exported row is checked
against the ledger it came from, and no export holds a path of this machine.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from instructions_fixtures import PLANNER, folder, run, sample_inputs  # noqa: F401 - fixtures
from PIL import Image
from styles_fixtures import CHEAP, emulator, records, write_records
from trainset_fixtures import source_file  # noqa: F401 - fixture

from imggen.cli import main as imggen
from imggen.engine.ledger import Ledger
from imggen.pipelines.styles.cli import main as styles
from imggen.pipelines.trainset import job_root
from imggen.pipelines.trainset.cli import main as trainset

COMMON = {"image", "prompt", "dataset", "model", "seed", "cost"}


def export(output: Path, target: Path, capsys) -> str:
    assert imggen(["export", str(output), "--to", "hf", str(target)]) == 0
    return capsys.readouterr().err


def no_local_path(target: Path, local: Path) -> None:
    """No file of the export, tar members included, names a path of this machine or a file: URL."""
    for path in target.rglob("*"):
        if path.suffix == ".tar":
            with tarfile.open(path) as shard:
                texts = [shard.extractfile(m).read() for m in shard if m.name.endswith((".json", ".txt"))]
        elif path.suffix in (".json", ".jsonl", ".txt"):
            texts = [path.read_bytes()]
        else:
            continue
        for text in texts:
            assert str(local).encode() not in text and b"file:" not in text, (path, text[:300])


def load(target: Path, tmp_path: Path, monkeypatch) -> list[dict]:
    import datasets  # here, not at collection, which every test process does

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = datasets.load_dataset("imagefolder", data_dir=str(target), cache_dir=str(tmp_path / "hf-cache"))
    assert list(loaded) == ["train"]
    return list(loaded["train"])


def ledger(root: Path, table: str = "tasks") -> dict[str, dict]:
    with Ledger(root, table=table) as opened:
        return {record["key"]: record for record in opened.records()}


def same_pixels(image: Image.Image, path: Path) -> bool:
    with Image.open(path) as stored:
        return np.array_equal(np.asarray(image.convert("RGB")), np.asarray(stored.convert("RGB")))


def styles_output(tmp_path: Path, monkeypatch) -> Path:
    """Three samples drawn in two styles (one with an id that is no file name), and one sample the
    content policy refuses in both."""
    out = tmp_path / "styles-out"
    prompts = write_records(tmp_path / "prompts.json", [
        *records(2), {"dataset": "wikipedia", "sample_id": "../q 1", "text": "a quay"},
        {"dataset": "asset", "sample_id": "9", "text": "a BLOCKED_PROMPT scene"}])
    with emulator(monkeypatch):
        assert styles(["--prompts", str(prompts), "--output", str(out), "--style", "cartoon", "sketch", *CHEAP]) == 1
    return out


def test_style_matrix_export_loads_with_every_ledger_column(tmp_path, monkeypatch, capsys):
    out = styles_output(tmp_path, monkeypatch)
    target = tmp_path / "hf"
    printed = export(out, target, capsys)
    assert "styles: 6 images exported" in printed and "not exported: 2 failed" in printed

    rows = load(target, tmp_path, monkeypatch)
    recorded = ledger(out)
    done = {key: record for key, record in recorded.items() if record["status"] == "done"}
    assert len(rows) == 6 and len(done) == 6
    assert sorted({row["sample_id"] for row in rows}) == ["../q 1", "000", "001"]
    assert COMMON | {"sample_id", "style", "text", "revised_prompt", "parameters"} <= set(rows[0])
    for row in rows:
        (record,) = [r for r in done.values() if (r["payload"]["sample_id"], r["payload"]["style"]) == (
            row["sample_id"], row["style"])]
        payload = record["payload"]
        assert (row["prompt"], row["text"], row["style"]) == (payload["prompt"], payload["text"], payload["style"])
        assert row["model"] == record["provenance"]["model"] == "gpt-image-2.6-sunburst"
        assert row["cost"] == pytest.approx(record["cost"]) and row["cost"] > 0
        assert json.loads(row["parameters"])["quality"] == "low" and row["seed"] is None
        assert same_pixels(row["image"], out / record["outputs"][0])
    assert os.path.samefile(target / "train" / "wikipedia_000_cartoon.png",
                            out / "images/by_style/cartoon/wikipedia_000_cartoon.png"), "hard-linked, not copied"


def test_export_replaces_an_earlier_export_and_refuses_other_folders(tmp_path, monkeypatch, capsys):
    out = styles_output(tmp_path, monkeypatch)
    target = tmp_path / "hf"
    export(out, target, capsys)
    (target / "train" / "wikipedia_001_sketch.png").unlink()
    export(out, target, capsys)  # again into the same folder: the earlier export is replaced whole
    assert len(list((target / "train").glob("*.png"))) == 6

    (tmp_path / "other").mkdir()
    other = styles_output(tmp_path / "other", monkeypatch)  # an export of another folder is kept unless forced
    assert imggen(["export", str(other), "--to", "hf", str(target)]) == 2
    assert "holds an export of another output folder (styles); add --force" in capsys.readouterr().err
    assert len(list((target / "train").glob("*.png"))) == 6
    assert imggen(["export", str(other), "--to", "hf", str(target), "--force"]) == 0
    assert str(tmp_path) not in (target / ".imggen-export.json").read_text()  # a digest, not the path

    elsewhere = tmp_path / "notes"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    assert imggen(["export", str(out), "--to", "hf", str(elsewhere)]) == 2
    assert "is not an earlier export" in capsys.readouterr().err
    assert [path.name for path in elsewhere.iterdir()] == ["keep.txt"]
    assert imggen(["export", str(out), "--to", "hf", str(elsewhere / "keep.txt")]) == 2
    assert (elsewhere / "keep.txt").read_text() == "mine"

    assert imggen(["export", str(tmp_path / "notes"), "--to", "hf", str(tmp_path / "x")]) == 2
    assert "not an output folder of imggen" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_instruction_images_export_has_question_and_instruction_columns(
        tmp_path, klein, monkeypatch, capsys):  # noqa: F811
    sample_inputs(tmp_path, questions=3)  # questions with 2, 1 and 0 instructions
    run(tmp_path, klein)
    run(tmp_path, klein, skip_existing=False)  # a second round replaces every image
    root = tmp_path / "generated_images"
    target = tmp_path / "hf"
    assert "instructions: 3 images exported" in export(root, target, capsys)

    rows = load(target, tmp_path, monkeypatch)
    recorded = ledger(root)
    results = [json.loads(line) for line in
               (tmp_path / "predicted_instructions" / PLANNER / "results.jsonl").read_text().splitlines()]
    instructions = {(str(r["id"]), index): text for r in results for index, text in enumerate(r["instructions"])}
    assert COMMON | {"instruction", "planning_model", "question_id", "instruction_index", "references", "source",
                     "round"} <= set(rows[0])
    no_local_path(target, tmp_path)
    assert {(row["question_id"], row["instruction_index"]) for row in rows} == set(instructions)
    for row in rows:
        image = f"{row['question_id']}/img_{row['instruction_index']}.png"
        record = recorded[f"spatial/{PLANNER}/flux2-klein-tiny/{image}#round1"]
        assert row["round"] == 1 and record["status"] == "done"
        assert row["prompt"] == row["instruction"] == instructions[row["question_id"], row["instruction_index"]]
        assert (row["dataset"], row["planning_model"], row["model"]) == ("spatial", PLANNER, "flux2-klein-tiny")
        assert row["seed"] == record["payload"]["seed"] and re.fullmatch(rf"{PLANNER}/results\.jsonl:\d+", row["source"])
        assert len(row["references"]) == len(record["payload"]["references"])
        for bundled, original in zip(row["references"], record["payload"]["references"]):  # moved with the export
            assert bundled.startswith("references/") and (target / bundled).read_bytes() == Path(original).read_bytes()
        assert same_pixels(row["image"], folder(tmp_path) / image)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_training_set_export_has_grid_tile_and_description_columns(
        tmp_path, klein, source_file, monkeypatch, capsys):  # noqa: F811
    for name in ("REPLICATE_API_TOKEN", "OPENAI_API_KEY", "AWS_ACCESS_KEY", "AWS_USER_FILES_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert trainset(["--source", str(source_file), "--user-id", "me", "--actor-id", "hero", "--target", "4",
                     "--local", "--flux_ckpt", str(klein), "--flux-size", "96", "--flux-steps", "2",
                     "--output", str(tmp_path / "runs")]) == 0
    capsys.readouterr()
    assert imggen(["export", str(tmp_path / "runs"), "--to", "hf", str(tmp_path / "hf")]) == 2
    assert "training-set run folders under it" in capsys.readouterr().err, "the work folder names its runs"

    root = job_root(tmp_path / "runs", "me", "hero")
    target = tmp_path / "hf"
    assert "trainset: 4 images exported" in export(root, target, capsys)
    rows = load(target, tmp_path, monkeypatch)
    recorded, grids = ledger(root), ledger(root, "grids")
    assert COMMON | {"user_id", "actor_id", "slot", "grid", "tile", "description", "category",
                     "upscaler", "text"} <= set(rows[0])
    assert sorted(row["slot"] for row in rows) == [1, 2, 3, 4]
    for row in rows:
        record = recorded[f"training-image{row['slot']}"]
        grid = grids[f"grid-{record['provenance']['grid']}"]
        assert (row["grid"], row["tile"]) == (record["provenance"]["grid"], record["provenance"]["tile"])
        assert row["description"] == grid["payload"]["subjects"][row["tile"]]["text"]
        assert (row["prompt"], row["seed"]) == (grid["payload"]["prompt"], grid["payload"]["seed"])
        assert (row["user_id"], row["actor_id"], row["upscaler"]) == ("me", "hero", "lanczos")
        assert row["cost"] == pytest.approx(record["cost"])
        assert same_pixels(row["image"], root / f"training-image{row['slot']}.jpg")
        assert row["text"] == (root / f"training-image{row['slot']}.txt").read_text(encoding="utf-8")
        assert row["text"] == row["description"]  # no trigger word: the caption is the tile's description
        assert row["url"] is None  # stored in a local folder: the image itself is in the export
    no_local_path(target, tmp_path)
    captions = {f"training-image{row['slot']}": row["text"] for row in rows}
    for kind in ("kohya", "dreambooth", "webdataset"):
        assert imggen(["export", str(root), "--to", kind, str(tmp_path / kind)]) == 0, capsys.readouterr().err
        no_local_path(tmp_path / kind, tmp_path)
    assert kohya_captions(tmp_path / "kohya") == captions
    assert dreambooth_images(tmp_path / "dreambooth") == set(captions)
    assert {sample["__key__"]: sample["txt"] for sample in webdataset_samples(tmp_path / "webdataset")} == captions


def kohya_captions(folder: Path) -> dict[str, str]:
    """What sd-scripts' DreamBooth dataset reads: only folders named ``{repeats}_{name}``, and each image's
    caption from the file of its name with the caption extension (here ``.txt``)."""
    found = {}
    for subset in folder.iterdir():
        if subset.name.startswith(".") or not re.match(r"^\d+_", subset.name):
            continue  # "ignore directory without repeats"
        assert subset.name == "10_hero"
        for image in subset.glob("*.jpg"):
            found[image.stem] = image.with_suffix(".txt").read_text(encoding="utf-8")
    return found


def dreambooth_images(folder: Path) -> set[str]:
    """diffusers' DreamBooth script opens every file of its instance folder as an image."""
    names = set()
    for path in (folder / "instance").iterdir():
        with Image.open(path) as image:
            image.verify()
        names.add(path.stem)
    return names


def webdataset_samples(folder: Path) -> list[dict]:
    import webdataset  # here, not at collection: it imports torch

    shards = sorted(str(path) for path in folder.glob("*.tar"))
    samples = list(webdataset.WebDataset(shards, shardshuffle=False).decode("pil"))
    for sample in samples:
        assert {"jpg", "txt", "json"} <= set(sample) and sample["json"]["text"] == sample["txt"]
    return samples
