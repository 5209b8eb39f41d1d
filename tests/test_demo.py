"""``imggen demo``'s report: every style sheet linked, none shown as an image (the whole demo runs from an
installed wheel in test_wheel.py)."""

from __future__ import annotations

from bs4 import BeautifulSoup
from styles_fixtures import CHEAP, emulator, records, write_records

from imggen.demo.report import write_report
from imggen.demo.tour import STAGES
from imggen.pipelines.styles.cli import main as styles


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
