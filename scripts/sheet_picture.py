"""Make ``docs/style-sheet.png``, the README's picture of a comparison sheet, from a real small run.

The style matrix runs on the local OpenAI emulator (each picture is drawn from its prompt, so
every cell differs): three samples of the packaged prompt set and one the emulator's safety system
refuses, in four styles, one image at a time with a budget that stops the run before the end. The
sheet so shows drawn, failed and pending cells. Run: ``.venv/bin/python scripts/sheet_picture.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from imggen.emulators.openai_server import openai_emulator_in_thread
from imggen.emulators.openai_state import OpenAIEmulatorConfig
from imggen.pipelines.styles import StyleRequest, plan_styles, write_sheets
from imggen.pipelines.styles.cli import main as styles

REPO = Path(__file__).resolve().parents[1]
PICTURE = REPO / "docs" / "style-sheet.png"
STYLES = ["cartoon", "realistic", "watercolor", "pixel_art"]


def main() -> None:
    samples = json.loads((REPO / "data" / "prompts" / "sample_prompts.json").read_text())[:3]
    samples.insert(1, {"dataset": "wikipedia", "sample_id": "001b", "text": "a BLOCKED_PROMPT the emulator refuses"})
    with tempfile.TemporaryDirectory() as work, \
            openai_emulator_in_thread(OpenAIEmulatorConfig(render_max_side=96, images_per_minute=100_000)) as server:
        prompts, output = Path(work) / "prompts.json", Path(work) / "out"
        prompts.write_text(json.dumps(samples))
        os.environ.update(OPENAI_API_KEY="sk-local", OPENAI_BASE_URL=server.base_url)
        request = StyleRequest(prompts, output, styles=STYLES, size="1024x1024", quality="low")
        price = plan_styles(request).tasks[0].cost
        styles(["--prompts", str(prompts), "--output", str(output), "--style", *STYLES, "--size", "1024x1024",
                "--quality", "low", "--concurrency", "1", "--budget", str(price * 10.5)])
        picture = next(path for path in write_sheets(output) if path.suffix == ".png")
        PICTURE.parent.mkdir(exist_ok=True)
        shutil.copyfile(picture, PICTURE)
    print(f"{PICTURE}: {PICTURE.stat().st_size} bytes")


if __name__ == "__main__":
    main()
