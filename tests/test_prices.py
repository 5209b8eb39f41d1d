"""Every model in the catalogs has a price or says "unknown"; a paid call of unknown price is counted as
such, never as $0.00, also in a ledger written before unknown prices were recorded."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from importlib import resources

import pytest

from imggen.backends import openai_models, replicate_catalog
from imggen.backends.openai_models import get_model, model_ids
from imggen.backends.openai_vision import answer_cost, price_known
from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO, TOPAZ_IMAGE_UPSCALE, replicate_models
from imggen.engine.ledger import LEDGER_NAME
from imggen.engine.paid_calls import USED, PaidCalls, money


def test_every_model_has_a_price_or_an_explicit_unknown():
    for ref, model in replicate_models().items():
        assert model.price_known == (model.price_usd_per_prediction is not None), ref
    assert replicate_models()[FLUX_KONTEXT_PRO].price_usd_per_prediction == 0.04
    assert not replicate_models()[TOPAZ_IMAGE_UPSCALE].price_known
    raw = json.loads(resources.files("imggen").joinpath("data", "replicate_models.json").read_text())
    assert raw["models"][TOPAZ_IMAGE_UPSCALE]["price_usd_per_prediction"] == "unknown"
    for model_id in model_ids():
        spec = get_model(model_id, allow_retired=True)
        entry = openai_models.load_registry()["models"][model_id]
        entry = openai_models.load_registry()["models"].get(entry.get("snapshot_of"), entry)
        assert spec.price_known != (entry.get("price") == "unknown"), model_id


def test_a_catalog_entry_without_a_price_is_refused():
    with pytest.raises(ValueError, match="needs price_usd_per_prediction"):
        replicate_catalog._price("someone/model", None)
    entry = dict(openai_models.load_registry()["models"]["gpt-image-2"])
    del entry["price"]
    with pytest.raises(ValueError, match="needs price_per_image"):
        openai_models._spec_from_entry("gpt-image-2", entry, openai_models.dt.date.today())


def test_a_call_of_unknown_price_is_counted_apart(tmp_path):
    calls = PaidCalls(tmp_path)
    calls.created("grid-1", "p1", FLUX_KONTEXT_PRO, 0.04)
    calls.created("upscale-1", "p2", TOPAZ_IMAGE_UPSCALE, None)
    calls.settle("p1", USED)
    calls.settle("p2", USED)
    calls.close()
    with closing(sqlite3.connect(tmp_path / LEDGER_NAME)) as db:
        found = money(db)
    assert (found["billed_cost_usd"], found["billed_calls"]) == (0.04, 2)
    assert (found["unpriced_calls"], found["unpriced_models"]) == (1, [TOPAZ_IMAGE_UPSCALE])


def test_an_older_ledger_that_booked_unknown_prices_at_zero_counts_them_as_unknown(tmp_path):
    with closing(sqlite3.connect(tmp_path / LEDGER_NAME)) as db, db:
        db.execute("CREATE TABLE paid_calls (call_id TEXT PRIMARY KEY, task_key TEXT NOT NULL, model TEXT NOT NULL, "
                   "price REAL NOT NULL, state TEXT NOT NULL DEFAULT 'open', created_at REAL NOT NULL, "
                   "settled_at REAL, note TEXT)")
        db.execute("INSERT INTO paid_calls VALUES ('p1', 'grid-1', ?, 0.04, 'used', 1, 2, NULL)", (FLUX_KONTEXT_PRO,))
        db.execute("INSERT INTO paid_calls VALUES ('p2', 'up-1', ?, 0, 'used', 1, 2, NULL)", (TOPAZ_IMAGE_UPSCALE,))
        db.execute("INSERT INTO paid_calls VALUES ('p3', 'up-2', ?, 0, 'open', 1, NULL, NULL)", (TOPAZ_IMAGE_UPSCALE,))
    calls = PaidCalls(tmp_path)
    assert calls.open_call("up-2").price is None  # the rerun collects it, still of unknown price
    calls.close()
    with closing(sqlite3.connect(tmp_path / LEDGER_NAME)) as db:
        found = money(db)
    assert (found["billed_cost_usd"], found["unpriced_calls"], found["open_calls"]) == (0.04, 1, 1)


def test_every_vision_model_has_token_prices_or_an_explicit_unknown_and_the_default_is_listed(monkeypatch):
    models = openai_models.load_registry()["vision_models"]
    assert openai_models.DEFAULT_VISION_MODEL in models
    for model_id, entry in models.items():
        entry = models.get(entry.get("snapshot_of"), entry)
        assert ("token_prices_per_million" in entry) != (entry.get("price") == "unknown"), model_id
        assert price_known(model_id) == ("token_prices_per_million" in entry)
    monkeypatch.setitem(models, "gpt-unpriced-by-omission", {"note": "neither"})
    with pytest.raises(ValueError, match="needs token_prices_per_million"):
        price_known("gpt-unpriced-by-omission")


def test_an_answers_cost_counts_cached_image_and_completion_tokens_at_their_prices(monkeypatch):
    prices = {"text_input": 1.0, "cached_input": 0.25, "image_input": 2.0, "output": 4.0}
    monkeypatch.setitem(openai_models.load_registry()["vision_models"], "gpt-priced",
                        {"token_prices_per_million": prices})
    usage = {"prompt_tokens": 1_000, "completion_tokens": 100,
             "prompt_tokens_details": {"cached_tokens": 200, "image_tokens": 500}}
    assert answer_cost("gpt-priced", usage) == pytest.approx((300 * 1.0 + 200 * 0.25 + 500 * 2.0 + 100 * 4.0) / 1e6)
    assert answer_cost("gpt-priced", None) is None and answer_cost("gpt-priced", {"total_tokens": 5}) is None
    assert answer_cost(openai_models.DEFAULT_VISION_MODEL, usage) is None  # no published price
    assert answer_cost("gpt-not-in-the-registry", usage) is None
