"""Comparison sheets of the style matrix: rebuilt from the ledger, for finished and half-finished runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from bs4 import BeautifulSoup
from PIL import Image
from styles_fixtures import CHEAP, emulator, generations, write_records

from imggen.cli import main as imggen
from imggen.engine.ledger import Ledger
from imggen.pipelines.styles import sheet
from imggen.pipelines.styles.cli import main as styles
from imggen.pipelines.styles import StyleRequest, plan_styles

HOSTILE_ID = "<b>2</b>"
HOSTILE_TEXT = "<script>alert('x')</script> & <img src=x onerror=alert(1)> a BLOCKED_PROMPT \"scene\"'>"
RECORDS = [
    {"dataset": "wiki", "sample_id": "001", "text": "a lighthouse at dusk"},
    {"dataset": "wiki", "sample_id": HOSTILE_ID, "text": HOSTILE_TEXT},  # refused: two failed cells
    {"dataset": "wiki", "sample_id": "003", "text": "a red fox in snow"},
]
STYLES = ["cartoon", "realistic"]


def table(page: Path) -> tuple[list[str], dict[str, tuple[str, list]]]:
    """The sheet's style columns and, per sample id, its text and style cells, as a browser reads them."""
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    header, *rows = soup.find("table").find_all("tr")
    columns = [th.get_text() for th in header.find_all("th")]
    assert columns[:2] == ["sample", "text"]
    body = {}
    for row in rows:
        sample, text, *cells = row.find_all(["th", "td"], recursive=False)
        body[sample.get_text()] = (text.get_text(), cells)
    return columns[2:], body


def cell_state(cell, page: Path) -> tuple[str, str | None]:
    """("done", the image file it shows), ("failed", its error kind) or ("pending", None)."""
    image = cell.find("img")
    if image is not None:
        assert image["loading"] == "lazy"
        return "done", str((page.parent / image["src"]).resolve())
    box = cell.find("div")
    if "failed" in box["class"]:
        return "failed", box.find("br").next_sibling.strip()
    return box.get_text(), None


def expected_cells(output: Path) -> dict[tuple[str, str], tuple[str, str | None]]:
    """What the ledger says of every (sample, style)."""
    with Ledger(output) as ledger:
        records = list(ledger.records())
    cells = {}
    for record in records:
        payload = record["payload"]
        if record["status"] == "done":
            state = "done", str((output / record["outputs"][0]).resolve())
        elif record["status"] == "failed":
            state = "failed", record["error_kind"]
        else:
            state = record["status"], None
        cells[payload["sample_id"], payload["style"]] = state
    return cells


def sheet_cells(page: Path) -> dict[tuple[str, str], tuple[str, str | None]]:
    columns, body = table(page)
    return {(sample, style): cell_state(cell, page)
            for sample, (_text, cells) in body.items() for style, cell in zip(columns, cells)}


def test_sheet_shows_every_cell_as_the_ledger_has_it_and_follows_the_run(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    prompts = write_records(tmp_path / "prompts.json", RECORDS)
    with emulator(monkeypatch) as server:
        price = plan_styles(StyleRequest(prompts, out, styles=STYLES, size="1024x1024", quality="low")).tasks[0].cost
        # One at a time in plan order, a budget for 3.5 images: 001 drawn, the refused pair failed,
        # 003 cartoon drawn, 003 realistic left pending.
        arguments = ["--prompts", str(prompts), "--output", str(out), "--style", *STYLES, *CHEAP, "--concurrency", "1"]
        assert styles([*arguments, "--budget", str(price * 3.5), "--sheet"]) == 2
        page = out / "images" / "sheets" / "wiki.html"
        assert f"sheet: {page}" in capsys.readouterr().err

        columns, body = table(page)
        assert columns == STYLES and list(body) == ["001", HOSTILE_ID, "003"]
        assert [text for text, _cells in body.values()] == [record["text"] for record in RECORDS]
        expected = expected_cells(out)
        assert sorted(state for state, _ in expected.values()) == ["done"] * 3 + ["failed"] * 2 + ["pending"]
        assert sheet_cells(page) == expected
        for state, image in expected.values():
            assert state != "done" or Path(image).is_file()
        assert expected[HOSTILE_ID, "cartoon"] == ("failed", "permanent")
        assert expected["003", "realistic"] == ("pending", None)

        picture = Image.open(out / "images" / "sheets" / "wiki.png").convert("RGB")
        assert picture.size == (sheet.LABEL_WIDTH + 2 * sheet.THUMB, sheet.HEADER_HEIGHT + 3 * sheet.THUMB)

        def colour_of(row: int, column: int) -> tuple:
            return picture.getpixel((sheet.LABEL_WIDTH + column * sheet.THUMB + 6,
                                     sheet.HEADER_HEIGHT + row * sheet.THUMB + 6))

        assert colour_of(1, 0) == colour_of(1, 1) == (253, 226, 226)  # the refused sample, both styles
        assert colour_of(2, 1) == (238, 238, 238)  # pending
        assert colour_of(0, 0) not in {(253, 226, 226), (238, 238, 238), (255, 255, 255)}  # a picture

        assert styles([*arguments]) == 1  # the rest is drawn; the refused pair stays failed
        paid = len(generations(server))
        assert imggen(["sheet", str(out)]) == 0
        assert len(generations(server)) == paid, "a sheet draws nothing"
        assert sheet_cells(page) == expected_cells(out)
        assert sheet_cells(page)["003", "realistic"][0] == "done"


def test_hostile_names_and_text_are_shown_as_text(tmp_path, monkeypatch):
    styles_file = tmp_path / "styles.json"
    hostile_style = "<i onmouseover=alert(1)>ink</i>'\""
    styles_file.write_text(json.dumps({"styles": {hostile_style: "an ink drawing of {text}"}}))
    hostile_dataset = "../<script>evil</script>"
    prompts = write_records(tmp_path / "prompts.json", [
        {"dataset": hostile_dataset, "sample_id": HOSTILE_ID, "text": HOSTILE_TEXT.replace("BLOCKED_PROMPT", "")}])
    out = tmp_path / "out"
    with emulator(monkeypatch):
        assert styles(["--prompts", str(prompts), "--output", str(out), "--styles", str(styles_file), *CHEAP,
                       "--sheet"]) == 0
    (page,) = (out / "images" / "sheets").glob("*.html")
    assert page.parent == out / "images" / "sheets"  # the dataset's name does not lead elsewhere
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    assert soup.find("script") is None and soup.find("i") is None and soup.find("b") is None
    assert not [tag for tag in soup.find_all(True) if any(name.startswith("on") for name in tag.attrs)]
    columns, body = table(page)
    assert columns == [hostile_style]
    assert body == {HOSTILE_ID: (HOSTILE_TEXT.replace("BLOCKED_PROMPT", ""), body[HOSTILE_ID][1])}
    state, image = cell_state(body[HOSTILE_ID][1][0], page)
    assert state == "done" and Path(image).is_file() and Path(image).is_relative_to(out / "images" / "by_style")
    assert soup.title.get_text().startswith(hostile_dataset)


def test_sheet_of_a_folder_that_is_no_style_matrix_says_so_and_writes_nothing(tmp_path, capsys):
    assert imggen(["sheet", str(tmp_path)]) == 2
    assert "not the output folder of a style-matrix run" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_large_dataset_gives_a_bounded_png_with_a_note_and_every_row_in_html(tmp_path, monkeypatch):
    samples = sheet.PNG_MAX_ROWS + 5
    prompts = write_records(tmp_path / "prompts.json", [
        {"dataset": "big", "sample_id": f"{i:04d}", "text": f"sample {i}"} for i in range(samples)])
    out = tmp_path / "out"
    with emulator(monkeypatch):
        assert styles(["--prompts", str(prompts), "--output", str(out), "--style", "cartoon", *CHEAP,
                       "--concurrency", "16"]) == 0
    written = sheet.write_sheets(out)
    assert [path.name for path in written] == ["big.html", "big.png"]
    _columns, body = table(written[0])
    assert len(body) == samples
    picture = Image.open(written[1]).convert("RGB")
    assert picture.height == sheet.HEADER_HEIGHT + sheet.PNG_MAX_ROWS * sheet.THUMB + sheet.NOTE_HEIGHT
    note = picture.crop((0, picture.height - sheet.NOTE_HEIGHT, picture.width, picture.height))
    red, green = np.asarray(note)[..., 0].astype(int), np.asarray(note)[..., 1].astype(int)
    assert ((red > 100) & (green < 80)).any(), "the note is missing"
