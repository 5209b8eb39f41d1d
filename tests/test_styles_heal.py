"""An image a killed run wrote but never booked is booked at what it was billed, and paid for no second time."""

from __future__ import annotations

import pytest
from styles_fixtures import CHEAP, SAMPLE_PROMPTS, by_style_images, emulator, generations, stats

from imggen.engine.ledger import LEDGER_NAME, Ledger
from imggen.pipelines.styles.cli import main


def test_images_found_on_disk_keep_their_billed_cost(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    args = [str(a) for a in ("--prompts", SAMPLE_PROMPTS, "--output", out, "--style", "cartoon", "anime",
                              "--max-samples", "1", *CHEAP)]
    with emulator(monkeypatch) as server:
        assert main(args) == 0
        billed = stats(out)["total_cost_usd"]
        requests = len(generations(server))
        assert billed > 0 and requests == 8
        # Every image is on disk, and the ledger never heard of them (a kill between write and booking).
        for name in (LEDGER_NAME, LEDGER_NAME + "-wal", LEDGER_NAME + "-shm"):
            (out / name).unlink(missing_ok=True)
        assert main(args) == 0
        assert len(generations(server)) == requests, "an image on disk was paid for again"
    capsys.readouterr()
    assert stats(out)["total_cost_usd"] == pytest.approx(billed, abs=1e-4)
    with Ledger(out) as ledger:
        records = [ledger.task(key) for key in ledger.keys("done")]
    assert len(records) == 8 == len(by_style_images(out)) and all(record["healed"] for record in records)
    assert sum(record["cost"] for record in records) == pytest.approx(billed, abs=1e-4)
