"""The style matrix's input files: prompt sets in three formats with record-level problems, and styles files."""

from __future__ import annotations

import csv
import json

import pytest
from styles_fixtures import REPO, SAMPLE_PROMPTS

from imggen.pipelines.styles.inputs import (
    InputError, choose_styles, default_styles_text, load_prompts, load_styles, select_records,
)
from imggen.pipelines.styles.layout import image_place


def test_the_three_formats_read_the_same_records(tmp_path):
    rows = [("wikipedia", "020", "A tower in Paris."), ("asset", "7", "Rain, then sun.")]
    (tmp_path / "p.json").write_text(json.dumps({"samples": [dict(zip(("dataset", "sample_id", "text"), r)) for r in rows]}))
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"dataset": d, "sample_id": s, "text": t}) + "\n" for d, s, t in rows))
    (tmp_path / "p.csv").write_text('dataset,sample_id,text\nwikipedia,020,A tower in Paris.\nasset,7,"Rain, then sun."\n')
    for name in ("p.json", "p.jsonl", "p.csv"):
        loaded = load_prompts(tmp_path / name)
        assert loaded.problems == []
        assert [(r.dataset, r.sample_id, r.text) for r in loaded.records] == rows


def test_bad_records_are_named_by_file_and_record_and_the_good_ones_stay(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        '{"dataset": "wikipedia", "sample_id": 1, "text": "good one"}\n'
        "{not json\n"
        '{"dataset": "asset", "sample_id": "2"}\n'
        '{"dataset": "simpa", "sample_id": true, "text": "bool id"}\n'
        "\n"
        '{"dataset": "wikipedia", "sample_id": "1", "text": "same id again"}\n'
        '["a", "list"]\n'
        '{"dataset": "onestop", "sample_id": "9", "text": "good two"}\n'
    )
    loaded = load_prompts(path)
    assert [(r.dataset, r.sample_id) for r in loaded.records] == [("wikipedia", "1"), ("onestop", "9")]
    messages = [str(problem) for problem in loaded.problems]
    assert messages[0].startswith(f"{path}, line 2: not valid JSON")
    assert messages[1] == f"{path}, line 3: missing text"
    assert messages[2] == f"{path}, line 4: sample_id must be a non-empty string or an integer"
    assert messages[3].startswith(f"{path}, line 6: repeats dataset 'wikipedia' sample '1' of line 1")
    assert messages[4].startswith(f"{path}, line 7: expected an object")
    assert len(messages) == 5


def test_json_records_are_numbered_and_csv_rows_by_line(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps([{"dataset": "a", "sample_id": "1", "text": "ok"}, {"dataset": "a"}]))
    assert [str(p) for p in load_prompts(tmp_path / "p.json").problems] == [f"{tmp_path / 'p.json'}, record 2: missing sample_id, text"]
    (tmp_path / "p.csv").write_text('dataset,sample_id,text\na,1,"two\nlines"\na,2,\n')
    loaded = load_prompts(tmp_path / "p.csv")
    assert [r.text for r in loaded.records] == ["two\nlines"]
    assert [str(p) for p in loaded.problems] == [f"{tmp_path / 'p.csv'}, line 4: missing text"]


@pytest.mark.parametrize("name, content, message", [
    ("p.json", "{oops", "not a readable JSON file"),
    ("p.json", '{"rows": []}', "expected a list of records"),
    ("p.csv", "dataset,text\na,b\n", r"lacks the column\(s\) sample_id"),
    ("p.txt", "", "unknown prompt-set format"),
])
def test_unusable_files_raise_naming_the_file(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match=message) as raised:
        load_prompts(tmp_path / name)
    assert str(tmp_path / name) in str(raised.value)


def test_selection_by_dataset_and_samples_per_dataset():
    records = load_prompts(SAMPLE_PROMPTS).records
    chosen = select_records(records, datasets=["asset", "onestop"], max_samples=2)
    assert [(r.dataset, r.sample_id) for r in chosen] == [("asset", "001"), ("asset", "002"), ("onestop", "001"), ("onestop", "002")]


def test_the_packaged_styles_are_ten_templates_and_the_repository_copy_matches():
    styles, problems = load_styles()
    assert problems == [] and len(styles) == 10
    assert [s.name for s in styles[:3]] == ["cartoon", "realistic", "artistic"]
    assert all("a red fox" in s.prompt("  a red fox ") for s in styles)
    assert (REPO / "data" / "styles" / "styles.json").read_text() == default_styles_text()


def test_a_styles_file_is_checked_entry_by_entry(tmp_path):
    path = tmp_path / "styles.json"
    path.write_text(json.dumps({"styles": {"noir": "Film noir still of {text}", "broken": "no slot here", "ink": 3}}))
    styles, problems = load_styles(path)
    assert [s.name for s in styles] == ["noir"]
    assert [p.where for p in problems] == ["style 'broken'", "style 'ink'"]
    assert styles[0].prompt("a {curly} cat") == "Film noir still of a {curly} cat"
    with pytest.raises(InputError, match="unknown style"):
        choose_styles(styles, ["noir", "cartoon"])
    assert [s.name for s in choose_styles(styles, ["noir"])] == ["noir"]


def test_file_names_follow_the_seed_and_hostile_names_stay_single_components():
    place = image_place("wikipedia", "020", "cartoon")
    assert place.by_style == "images/by_style/cartoon/wikipedia_020_cartoon.png"
    assert place.by_dataset == "images/by_dataset/wikipedia/wikipedia_020_cartoon.png"
    for hostile in ("../x", "/etc/passwd", "..", "a/../../b"):
        hostile_place = image_place(hostile, hostile, hostile)
        for path in hostile_place.outputs:
            parts = path.split("/")
            assert len(parts) == 4 and ".." not in parts and all(parts)
    assert image_place("a", "../x", "s").key != image_place("a", "/x", "s").key


def test_planning_skips_prompts_too_long_for_the_model_and_file_name_clashes(tmp_path):
    from imggen.pipelines.styles import StyleRequest, plan_styles

    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([
        {"dataset": "a_b", "sample_id": "c", "text": "short"},
        {"dataset": "a", "sample_id": "b_c", "text": "same file name as record 1"},
        {"dataset": "wikipedia", "sample_id": "1", "text": "x" * 3990},
    ]))
    plan = plan_styles(StyleRequest(prompts=prompts, output=tmp_path / "out", model="dall-e-3", allow_retired=True,
                                    styles=["cartoon", "sketch"]))
    assert [task.key for task in plan.tasks] == ["a_b_c_cartoon", "a_b_c_sketch"]
    messages = [str(problem) for problem in plan.problems]
    assert f"{prompts}, record 2: its file name a_b_c_cartoon.png is already used by record 1; skipped" in messages
    assert sum("takes at most 4000" in message and ", record 3: " in message for message in messages) == 2
    assert plan.estimated_cost == pytest.approx(2 * 0.08)  # dall-e-3 hd 1024x1024, the seed's settings


BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("name, content", [
    ("p.csv", b"dataset,sample_id,text\r\nwikipedia,020,A tower in Paris.\r\n"),  # as Excel saves it
    ("p.jsonl", b'{"dataset": "wikipedia", "sample_id": "020", "text": "A tower in Paris."}\n'),
    ("p.json", b'[{"dataset": "wikipedia", "sample_id": "020", "text": "A tower in Paris."}]'),
])
def test_a_file_saved_with_a_byte_order_mark_reads_as_without(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(BOM + content)
    loaded = load_prompts(path)
    assert loaded.problems == []
    assert [(r.dataset, r.sample_id, r.text) for r in loaded.records] == [("wikipedia", "020", "A tower in Paris.")]


def test_a_styles_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "styles.json"
    path.write_bytes(BOM + json.dumps({"styles": {"ink": "Ink drawing of {text}"}}).encode())
    assert [style.name for style in load_styles(path)[0]] == ["ink"]


@pytest.mark.parametrize("name, lines", [
    ("p.jsonl", [b'{"dataset": "a", "sample_id": "1", "text": "good"}',
                 b'{"dataset": "a", "sample_id": "2", "text": "caf\xe9"}',  # Latin-1, not UTF-8
                 b'{"dataset": "a", "sample_id": "3", "text": "good too"}']),
    # UTF-8 elsewhere (a UTF-8 "na\xc3\xafve"), so the Latin-1 byte is a damaged row, not the file's encoding
    ("p.csv", [b"dataset,sample_id,text", b"a,1,good na\xc3\xafve", b"a,2,caf\xe9", b"a,3,good too"]),
])
def test_an_undecodable_byte_is_one_bad_record_and_the_rest_is_read(tmp_path, name, lines):
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    loaded = load_prompts(path)
    assert [r.sample_id for r in loaded.records] == ["1", "3"]
    bad_line = 2 if name == "p.jsonl" else 3
    assert [str(p) for p in loaded.problems] == [f"{path}, line {bad_line}: not UTF-8" + (
        " (byte 0xe9 at column 48)" if name == "p.jsonl" else " (an undecodable byte in this row)")]


@pytest.mark.parametrize("encoding, separator, read_as", [
    ("cp1252", ",", "Windows-1252 text"),  # Excel's "CSV (Comma delimited)"
    ("cp1252", ";", "Windows-1252 text, columns separated by semicolons"),  # a European Excel's
    ("utf-8-sig", ";", "columns separated by semicolons"),  # a European Excel's "CSV UTF-8"
    ("utf-8", "\t", "columns separated by tabs"),
    ("utf-8", ",", None),
])
def test_csv_files_as_excel_saves_them_are_read_whole(tmp_path, encoding, separator, read_as):
    texts = ["Caf\u00e9 cr\u00e8me at 3 \u20ac", "Stra\u00dfe; a long one", "na\u00efve, plain"]
    rows = [["dataset", "sample_id", "text"], *(["wikipedia", str(n), text] for n, text in enumerate(texts))]
    path = tmp_path / "p.csv"
    with path.open("w", encoding=encoding, newline="") as file:
        csv.writer(file, delimiter=separator).writerows(rows)
    loaded = load_prompts(path)
    assert not loaded.problems
    assert [record.text for record in loaded.records] == texts
    assert loaded.read_as == read_as


def test_a_csv_without_the_columns_says_what_its_header_reads_and_how_to_save_it(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("name|id|prompt\na|1|b\n")
    with pytest.raises(InputError, match=r"lacks the column\(s\) dataset, sample_id, text \(it reads 'name\|id\|prompt'\); "
                                         r"save it as \"CSV UTF-8\""):
        load_prompts(path)
