"""Shared pieces of the style-matrix tests: a local OpenAI emulator, prompt files, and readers of the results."""

from __future__ import annotations

import collections
import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

from PIL import Image

from imggen.emulators.openai_server import RunningOpenAIEmulator, openai_emulator_in_thread
from imggen.emulators.openai_state import OpenAIEmulatorConfig

API_KEY = "sk-styles-test-0123456789"
REPO = Path(__file__).resolve().parent.parent
SAMPLE_PROMPTS = REPO / "data" / "prompts" / "sample_prompts.json"
CHEAP = ["--size", "1024x1024", "--quality", "low"]  # a known per-image price, so budgets apply


@contextlib.contextmanager
def emulator(monkeypatch=None, **config) -> Iterator[RunningOpenAIEmulator]:
    """An OpenAI emulator drawing tiny pictures; with ``monkeypatch``, OPENAI_* point at it."""
    settings = {"render_max_side": 16, "images_per_minute": 100_000, **config}
    with openai_emulator_in_thread(OpenAIEmulatorConfig(**settings)) as server:
        if monkeypatch is not None:
            monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
            monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        yield server


def emulator_env(server: RunningOpenAIEmulator) -> dict[str, str]:
    """The environment of a child process that talks to ``server``."""
    return {**os.environ, "OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": server.base_url}


def write_records(path: Path, records: list[dict]) -> Path:
    """A prompt set in the format of ``path``'s suffix (.json or .jsonl)."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    else:
        path.write_text(json.dumps(records), encoding="utf-8")
    return path


def records(count: int, dataset: str = "wikipedia") -> list[dict]:
    return [{"dataset": dataset, "sample_id": f"{i:03d}", "text": f"sample text number {i}"} for i in range(count)]


def generations(server: RunningOpenAIEmulator) -> list:
    return [r for r in server.requests if r.path == "/v1/images/generations"]


def successful_prompts(server: RunningOpenAIEmulator) -> collections.Counter:
    return collections.Counter(r.prompt for r in generations(server) if r.status == 200)


def png_text(path: Path) -> dict[str, str]:
    with Image.open(path) as image:
        image.load()
        return dict(image.text)


def provenance(path: Path) -> dict:
    """The provenance JSON an image carries under its ``imggen`` text chunk."""
    return json.loads(png_text(path)["imggen"])


def by_style_images(output: Path) -> list[Path]:
    return sorted((output / "images" / "by_style").rglob("*.png"))


def stats(output: Path) -> dict:
    return json.loads((output / "images" / "processing_stats.json").read_text())


def kill_while_drawing(command: list[str], env: dict, out: Path, rng, *, times: int, images: tuple[int, int],
                       timeout_s: float = 90) -> tuple[int, collections.Counter]:
    """Run ``command`` up to ``times`` times, each SIGKILLed once it has drawn a random number (within
    ``images``) of new images; returns the kills and the tasks the ledger had running at each kill."""
    import signal
    import subprocess
    import time

    from imggen.engine.ledger import Ledger

    kills, in_flight = 0, collections.Counter()
    for _ in range(times):
        threshold = len(by_style_images(out)) + rng.randint(*images)
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while len(by_style_images(out)) < threshold and process.poll() is None:
            assert time.monotonic() < deadline, "the run drew nothing for too long"
            time.sleep(0.005)
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        with Ledger(out) as ledger:
            in_flight.update(ledger.keys("running"))
    return kills, in_flight
