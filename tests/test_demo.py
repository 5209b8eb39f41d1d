"""``imggen demo``: all three pipelines offline through their notebooks, a report, and no key in any file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from bs4 import BeautifulSoup
from styles_fixtures import CHEAP, emulator, records, write_records

from imggen.demo.report import write_report
from imggen.demo.tour import STAGES
from imggen.pipelines.styles.cli import main as styles

FAKE_KEYS = {
    "OPENAI_API_KEY": "sk-demo-should-never-appear-0001",
    "REPLICATE_API_TOKEN": "r8_demo_should_never_appear_0002",
    "AWS_ACCESS_SECRET": "aws-demo-should-never-appear-0003",
}


@pytest.mark.slow
def test_demo_runs_three_pipelines_offline_and_keys_change_nothing(tmp_path):
    out = tmp_path / "demo-output"
    environment = {**os.environ, **FAKE_KEYS, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    result = subprocess.run(
        [sys.executable, "-m", "imggen.cli", "demo", "--output", str(out)],
        env=environment, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "running over TCP without encryption" not in result.stderr
    report = (out / "report.html").read_text()
    for title in ("Style matrix", "Instruction images", "Training set"):
        assert f"<h2>{title}</h2>" in report
    assert "draws noise" in report and "OPENAI_API_KEY" in report
    assert len(list((out / "styles" / "images" / "by_style").rglob("*.png"))) == 40
    assert len(list((out / "instructions").rglob("img_*.png"))) == 3
    assert report.count("<img ") >= 24 + 3 + 20  # thumbnails: 24 at most per pipeline
    assert "40 images in" in report and "(the first 24 shown)" in report  # the count says what is left out
    for dataset in ("asset", "onestop", "simpa", "wikipedia"):
        assert f"href='styles/images/sheets/{dataset}.html'" in report
        assert (out / "styles" / "images" / "sheets" / f"{dataset}.png").is_file()
    for path in out.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            data = path.read_bytes()
            for key in FAKE_KEYS.values():
                assert key.encode() not in data, f"{key} found in {path}"


def test_the_report_links_every_style_sheet_and_shows_no_sheet_as_an_image(tmp_path, monkeypatch):
    root = tmp_path / "demo-output"
    prompts = write_records(tmp_path / "prompts.json", [*records(2), *records(1, dataset="asset")])
    with emulator(monkeypatch):
        assert styles(["--prompts", str(prompts), "--output", str(root / "styles"), "--style", "cartoon", *CHEAP,
                       "--sheet"]) == 0
    page = BeautifulSoup(write_report(root, [(STAGES[0], root / "notebooks" / STAGES[0].notebook)]).read_text(),
                         "html.parser")
    links = [link["href"] for link in page.select("p.sheets a")]
    assert links == [f"styles/images/sheets/{name}" for name in ("asset.html", "asset.png", "wikipedia.html",
                                                                "wikipedia.png")]
    assert all((root / link).is_file() for link in links)
    assert "3 images in" in page.get_text()
    assert [image["src"] for image in page.find_all("img")] == [f"styles/images/by_dataset/{name}.png" for name in (
        "asset/asset_000_cartoon", "wikipedia/wikipedia_000_cartoon", "wikipedia/wikipedia_001_cartoon")]
