"""Reading results.jsonl, the dataset/ -> datasets/ remap, the plan's keys and seeds, stats.json's
shape, and the command line: everything before a model is loaded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from imggen.engine.seeds import image_seed
from imggen.pipelines.instructions.cli import build_parser, options_from_args
from imggen.pipelines.instructions.layout import Group, generation_stats
from imggen.pipelines.instructions.inputs import BadRecord, Question, read_questions, remap_image_path
from imggen.pipelines.instructions.plan import build_plan, planning_model_names
from imggen.pipelines.instructions.render import load_reference

from instructions_fixtures import PLANNER, noise_image, sample_inputs, write_results

SEED_STATS = Path(__file__).parent / "specs" / "instructions_stats_example.json"


def plan_for(root: Path, **changes):
    settings = dict(predicted_root=root / "predicted_instructions", planning_models=[PLANNER],
                    output_root=root / "out", image_root=root, generation_model="flux2-klein-tiny")
    settings.update(changes)
    return build_plan(**settings)


def test_paths_are_remapped_from_dataset_to_datasets_only_when_missing(tmp_path):
    moved = noise_image(tmp_path / "datasets" / "x" / "img.png", 1)
    assert remap_image_path("dataset/x/img.png", tmp_path) == moved.resolve()
    kept = noise_image(tmp_path / "dataset" / "x" / "img.png", 2)
    assert remap_image_path("dataset/x/img.png", tmp_path) == kept.resolve()
    assert remap_image_path("dataset/x/missing.png", tmp_path) is None
    assert remap_image_path("mydataset/x/img.png", tmp_path) is None  # only a whole dataset/ folder


def test_bad_records_name_file_and_line_and_the_rest_is_read(tmp_path):
    noise_image(tmp_path / "datasets" / "d" / "ok.png", 1)
    good = {"id": 7, "dataset": "d", "image_paths": ["dataset/d/ok.png"], "instructions": ["a"]}
    results = write_results(tmp_path, PLANNER, [
        good,
        '{"id": 8, "dataset": "d", ',  # broken JSON
        {"id": 9, "dataset": "d", "image_paths": ["dataset/d/ok.png"]},  # no instructions
        "",  # blank lines are not records
        {"id": 10, "dataset": "d", "image_paths": ["dataset/d/gone.png"], "instructions": ["b"]},
        {"id": 11, "dataset": "d", "image_paths": "dataset/d/ok.png", "instructions": ["c"]},
        {**good, "instructions": ["again"]},  # the same id twice
        [1, 2],
        {**good, "id": 12},
    ])
    records = list(read_questions(results, image_root=tmp_path))
    bad = {int(r.source.rsplit(":", 1)[1]): r.message for r in records if isinstance(r, BadRecord)}
    assert [r.question_id for r in records if isinstance(r, Question)] == [7, 12]
    assert set(bad) == {2, 3, 5, 6, 7, 8}
    assert "not valid JSON" in bad[2]
    assert "missing field(s): instructions" in bad[3]
    assert "image not found: dataset/d/gone.png" in bad[5]
    assert "'image_paths' must be a list of strings" in bad[6]
    assert f"{results}:1" in bad[7]  # the repeat names the first occurrence
    assert "expected a JSON object" in bad[8]
    assert all(r.source.startswith(f"{results}:") for r in records)


def test_plan_has_one_task_per_instruction_with_the_seed_layout(tmp_path):
    sample_inputs(tmp_path, questions=3)
    plan = plan_for(tmp_path)
    tasks = list(plan.tasks())
    assert [t.key for t in tasks] == [
        "spatial/Planner-7B/flux2-klein-tiny/0/img_0.png",
        "spatial/Planner-7B/flux2-klein-tiny/0/img_1.png",
        "spatial/Planner-7B/flux2-klein-tiny/1/img_0.png",
    ]
    assert all(t.outputs == (t.key,) for t in tasks)
    assert tasks[2].payload["references"] == [
        str((tmp_path / "datasets/eval/spatial/images" / name).resolve()) for name in ("a.png", "b.png")
    ]
    assert tasks[0].payload["path"] == str((tmp_path / "out" / tasks[0].key).resolve())
    assert tasks[0].payload["source"].endswith("results.jsonl:1")
    assert (tmp_path / "out/spatial/Planner-7B/flux2-klein-tiny/2").is_dir()  # no instructions: empty folder


def test_max_samples_keeps_the_first_records(tmp_path):
    sample_inputs(tmp_path, questions=6)
    entries = plan_for(tmp_path, max_samples=4).groups[Group("spatial", PLANNER, "flux2-klein-tiny")]
    assert [entry.question_id for entry in entries] == [0, 1, 2, 3]


def test_untrusted_names_stay_inside_the_output_root(tmp_path):
    noise_image(tmp_path / "img.png", 1)
    write_results(tmp_path, PLANNER, [
        {"id": "../../escape", "dataset": "../up", "image_paths": ["img.png"], "instructions": ["x"]},
        {"id": "q/1", "dataset": "run.log", "image_paths": ["img.png"], "instructions": ["x"]},
    ])
    plan = plan_for(tmp_path)
    (task,) = list(plan.tasks())
    out = (tmp_path / "out").resolve()
    assert out in Path(task.payload["path"]).parents
    assert ".." not in task.key
    assert [record.message for record in plan.bad_records] == ["dataset name 'run.log' is reserved in the output root"]


def test_image_seeds_depend_on_question_and_index_not_on_the_planner_or_the_order():
    seeds = {image_seed(0, "d", str(q), i) for q in range(20) for i in range(5)}
    assert max(seeds) < 2**53 and max(seeds) > 2**40  # exact in a JavaScript number and a float, and spread
    assert len(seeds) == 100
    assert image_seed(0, "d", "3", 1) == image_seed(0, "d", "3", 1) != image_seed(1, "d", "3", 1)
    assert all(0 <= seed < 2**63 for seed in seeds)


def test_stats_have_a_pair_of_keys_for_every_distinct_count_in_the_seed_shape():
    stats = generation_stats([(0, 1), (1, 1), (2, 0), (3, 3), (4, 1)])
    assert stats == {
        "summary": {
            "number of 0 generation": 1, "ratio of 0 generation": 0.2,
            "number of 1 generation": 3, "ratio of 1 generation": 0.6,
            "number of 3 generation": 1, "ratio of 3 generation": 0.2,
        },
        "0 generation": [2],
        "1 generation": [0, 1, 4],
        "3 generation": [3],
    }
    seed = json.loads(SEED_STATS.read_text())
    ours = generation_stats([(i, 0) for i in seed["0 generation"]] + [(i, 1) for i in seed["1 generation"]])
    assert list(ours) == list(seed) and list(ours["summary"]) == list(seed["summary"])


def test_all_planning_models_are_the_folders_sorted(tmp_path):
    for name in ("b-model", "a-model", ".hidden"):
        (tmp_path / name).mkdir()
    (tmp_path / "notes.txt").write_text("")
    assert planning_model_names(tmp_path, None) == ["a-model", "b-model"]
    (tmp_path / "a-model" / "results.jsonl").write_text("")
    assert planning_model_names(tmp_path, "a-model") == ["a-model"]


def test_cli_has_the_seed_arguments_and_their_defaults():
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args([])  # one of --planning_model / --all_planning_models is required
    with pytest.raises(SystemExit):
        parser.parse_args(["--planning_model", "m", "--all_planning_models"])
    options = options_from_args(parser.parse_args(["--planning_model", "m"]))
    assert options.flux_ckpt == Path("checkpoints/flux2-klein-4B")
    assert options.predicted_instructions_root == Path("predicted_instructions")
    assert options.output_root == Path("generated_images")
    assert (options.num_gpus, options.max_samples, options.skip_existing) == (-1, -1, True)
    assert options.num_inference_steps is None and options.height is None and options.width is None
    everything = options_from_args(parser.parse_args([
        "--all_planning_models", "--num_inference_steps", "4", "--height", "512", "--width", "768",
        "--num_gpus", "2", "--no_skip_existing", "--max_samples", "6", "--engine", "ray", "--device", "cpu",
        "--seed", "5", "--batch_size", "3",
    ]))
    assert everything.planning_model is None and not everything.skip_existing
    assert (everything.num_inference_steps, everything.height, everything.width, everything.num_gpus) == (4, 512, 768, 2)
    assert (everything.engine, everything.device, everything.seed, everything.batch_size) == ("ray", "cpu", 5, 3)


def test_a_conditioning_image_is_decoded_once_and_read_again_when_replaced(tmp_path):
    path = tmp_path / "source.png"
    Image.new("RGB", (64, 64), "red").save(path)
    first = load_reference(str(path), "results.jsonl:1")
    assert load_reference(str(path), "results.jsonl:2") is first  # the next instruction reuses it

    Image.new("RGB", (48, 48), "blue").save(path)
    replaced = load_reference(str(path), "results.jsonl:3")
    assert replaced.size == (48, 48) and replaced.getpixel((0, 0)) == (0, 0, 255)


def test_a_byte_order_mark_keeps_line_1_and_its_repeat_is_caught(tmp_path):
    noise_image(tmp_path / "datasets" / "d" / "ok.png", 1)
    first = {"id": 7, "dataset": "d", "image_paths": ["dataset/d/ok.png"], "instructions": ["a"]}
    results = write_results(tmp_path, PLANNER, [first, {**first, "instructions": ["again"]}])
    results.write_bytes(b"\xef\xbb\xbf" + results.read_bytes())  # as Notepad saves it
    records = list(read_questions(results, image_root=tmp_path))
    assert isinstance(records[0], Question) and records[0].question_id == 7
    assert isinstance(records[1], BadRecord) and f"repeats {results}:1" in records[1].message


def test_an_undecodable_byte_spoils_only_its_own_line(tmp_path):
    noise_image(tmp_path / "datasets" / "d" / "ok.png", 1)
    good = {"id": 7, "dataset": "d", "image_paths": ["dataset/d/ok.png"], "instructions": ["a"]}
    results = write_results(tmp_path, PLANNER, [good, {**good, "id": 8}, {**good, "id": 9}])
    lines = results.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"a"', b'"caf\xe9"')  # Latin-1, not UTF-8
    results.write_bytes(b"\n".join(lines))
    records = list(read_questions(results, image_root=tmp_path))
    assert [r.question_id for r in records if isinstance(r, Question)] == [7, 9]
    bad = [r for r in records if isinstance(r, BadRecord)]
    assert len(bad) == 1 and bad[0].source == f"{results}:2" and bad[0].message.startswith("not UTF-8 (byte 0xe9")


def test_ids_and_paths_are_shown_and_logged_as_they_are(tmp_path, capsys):
    from imggen.pipelines.instructions.cli import main

    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "model_index.json").write_text("{}")  # no task is left to run, so no model is loaded
    noise_image(tmp_path / "pics" / "here.png", 1)
    without_instructions = [{"id": f"e{n}", "dataset": "d", "image_paths": ["pics/here.png"], "instructions": []}
                            for n in range(3)]  # so that most records' images are there
    write_results(tmp_path, PLANNER, [*without_instructions,
        {"id": "q[/]1", "dataset": "d", "image_paths": ["pics/[/]a.png"], "instructions": ["x"]},
        {"id": "q2", "dataset": "d", "instructions": ["x"],
         "image_paths": ["pics/nul\x00\x1b[31m\n2026-01-01 00:00:00,000 INFO done.png"]},
    ])
    code = main(["--planning_model", PLANNER, "--predicted_instructions_root", str(tmp_path / "predicted_instructions"),
                 "--image_root", str(tmp_path), "--output_root", str(tmp_path / "out"), "--flux_ckpt", str(checkpoint),
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1, err  # bad records, no traceback
    assert f"skipped: 2 input record(s), listed above and in {tmp_path / 'out' / 'run.log'}" in err  # as styles says it
    assert "image not found: pics/[/]a.png" in err
    assert "image not found: pics/nul\\x00\\x1b[31m\n2026-01-01" in err and "\x00" not in err and "\x1b[31m" not in err
    log = (tmp_path / "out" / "run.log").read_text()
    assert "image not found: pics/[/]a.png" in log
    assert "pics/nul\\x00\\x1b[31m\\n2026-01-01" in log and "\x00" not in log and "\x1b" not in log
    lines = log.splitlines()  # a newline in a record starts no forged entry
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:", entry) for entry in lines) and "\\n2026" in log
    assert sum(" bad record " in entry for entry in lines) == 2
