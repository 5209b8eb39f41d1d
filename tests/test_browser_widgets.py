"""The notebooks in a real JupyterLab, clicked in Debian's Chromium through Playwright.

The only layer that exercises what a user's browser does: JupyterLab's comm routing (subshells),
the widgets' rendering and the cell-returns-at-once pattern. The kernels talk to a local OpenAI
emulator slow enough (0.3 s an image, two at a time) to click while the run goes on.
Pause must stop new requests; Resume must finish the run; Stop must leave a consistent ledger that
a headless rerun completes without drawing any image twice. Run All of the instruction-image and
training-set notebooks (on the tiny checkpoint, no key) ends with their stats table and gallery.

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``); without it the test fails unless
``IMGGEN_SKIP_BROWSER=1``. Screenshots and the server log go to ``test-artifacts/browser/`` (or
``$IMGGEN_ARTIFACTS/browser/``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from browser_helpers import (
    chromium_problem, copy_notebook_with_parameters, launched_chromium, open_and_run_all, running_jupyterlab,
    shut_down_kernel, wait_for,
)
from styles_fixtures import REPO, SAMPLE_PROMPTS, by_style_images, emulator, emulator_env, generations

from imggen.engine.ledger import DONE, RUNNING, Ledger
from imggen.pipelines.styles import StyleRequest, plan_styles, run_styles

NOTEBOOK = REPO / "notebooks" / "01_style_matrix.ipynb"
LATENCY_S = 0.3
CONCURRENCY = 2
PAUSE_QUIET_S = 1.5  # the emulator must see no new request for this long while paused
UI_TIMEOUT_MS = 15_000
RUN_TIMEOUT_MS = 60_000

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(300, method="signal")]


@pytest.fixture
def artifacts() -> Path:
    base = Path(os.environ["IMGGEN_ARTIFACTS"]) if os.environ.get("IMGGEN_ARTIFACTS") else REPO / "test-artifacts"
    folder = base / "browser"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def playwright():
    if os.environ.get("IMGGEN_SKIP_BROWSER") == "1":
        pytest.skip("IMGGEN_SKIP_BROWSER=1: the real-browser widget test is switched off")
    problem = chromium_problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install -e '.[dev]' (never `playwright install`)",
                    pytrace=False)
    with sync_playwright() as driver:
        yield driver


class Panel:
    """The run's widgets on the page, read the way a user reads them."""

    def __init__(self, page) -> None:
        self.page = page
        self.status = page.locator(".imggen-status")
        self.stats = page.locator(".imggen-stats")
        self.bar = page.locator(".imggen-progress .progress-bar")

    def done(self) -> tuple[int, int]:
        match = re.search(r"(\d+)/(\d+) done", self.stats.inner_text(timeout=UI_TIMEOUT_MS))
        return (int(match[1]), int(match[2])) if match else (0, 0)

    def snapshot(self) -> tuple[str, str, str]:
        return (self.status.inner_text(timeout=UI_TIMEOUT_MS), self.stats.inner_text(timeout=UI_TIMEOUT_MS),
                self.bar.get_attribute("style", timeout=UI_TIMEOUT_MS))

    def wait_for_done(self, at_least: int) -> int:
        """Wait until ``at_least`` images are done; returns the run's total."""
        _, total = wait_for(lambda: (counts := self.done())[0] >= at_least and counts,
                               RUN_TIMEOUT_MS / 1000, f"{at_least} images done on the progress panel")
        return total

    def click(self, button: str) -> None:
        self.page.locator(f".imggen-{button}").click(timeout=UI_TIMEOUT_MS)


def start_run_in_browser(browser, lab, name: str, errors: list[str]):
    """A fresh page with notebook ``name`` open and all its cells started; returns the page and its panel."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    open_and_run_all(page, lab, name)
    panel = Panel(page)
    page.locator(".imggen-pause").wait_for(state="visible", timeout=RUN_TIMEOUT_MS)
    return page, panel


def settled_request_count(server) -> int:
    """The emulator's request count once no request has come back for two latencies (in-flight ones done)."""
    seen = [len(server.requests), time.monotonic()]

    def settled() -> bool:
        if len(server.requests) != seen[0]:
            seen[:] = [len(server.requests), time.monotonic()]
        return time.monotonic() - seen[1] >= 2 * LATENCY_S

    wait_for(settled, 10, "the requests in flight at the pause to come back")
    return seen[0]


def image_count(output: Path) -> int:
    return len(by_style_images(output))


def ledger_counts(output: Path) -> dict[str, int]:
    with Ledger(output) as ledger:
        return ledger.counts()


def run_parameters(output: Path, styles: list[str] | None) -> dict:
    return {"prompts": str(SAMPLE_PROMPTS), "output": str(output), "max_samples": 1, "styles": styles,
            "concurrency": CONCURRENCY, "size": "1024x1024", "quality": "low"}


def test_pause_resume_and_stop_in_jupyterlab(tmp_path, playwright, artifacts, monkeypatch):
    from playwright.sync_api import expect

    root = tmp_path / "lab"
    root.mkdir()
    paused_out, stopped_out = tmp_path / "paused-run", tmp_path / "stopped-run"
    pause_styles = ["cartoon", "anime", "watercolor", "pixel_art", "sketch"]
    copy_notebook_with_parameters(NOTEBOOK, root / "pause.ipynb", run_parameters(paused_out, pause_styles))
    copy_notebook_with_parameters(NOTEBOOK, root / "stop.ipynb", run_parameters(stopped_out, None))
    errors: list[str] = []
    began = time.monotonic()
    with (
        emulator(monkeypatch, latency_s=LATENCY_S) as server,
        running_jupyterlab(root, tmp_path / "jupyter", emulator_env(server), artifacts / "jupyterlab.log") as lab,
        launched_chromium(playwright) as browser,
    ):
        # Scenario 1: Pause holds every new request back; Resume finishes the run.
        page, panel = start_run_in_browser(browser, lab, "pause.ipynb", errors)
        lab.note_kernels()
        try:
            total = panel.wait_for_done(3)
            panel.click("pause")
            expect(panel.status).to_have_text("paused", timeout=UI_TIMEOUT_MS)
            paused_seen = time.time()
            count = settled_request_count(server)
            quiet_from, shown = time.time(), panel.snapshot()
            time.sleep(PAUSE_QUIET_S)
            assert len(server.requests) == count, "the emulator got a request while the run was paused"
            late = [r for r in server.requests if r.time > paused_seen + LATENCY_S]
            assert not late, f"requests started {[round(r.time - paused_seen, 2) for r in late]} s after the pause"
            assert panel.snapshot() == shown, "the progress moved while the run was paused"
            assert time.time() - quiet_from >= PAUSE_QUIET_S
            assert panel.done()[0] < total
            page.screenshot(path=artifacts / "1-paused.png", timeout=UI_TIMEOUT_MS)

            panel.click("resume")
            expect(panel.status).to_have_text("finished", timeout=RUN_TIMEOUT_MS)
            # each widget's value is its own message: the counts may reach the page a moment after the state
            expect(panel.stats).to_contain_text(re.compile(rf"\b{total}/{total} done"), timeout=UI_TIMEOUT_MS)
            # Run All reached the last cell long ago: it shows the stats and the gallery now the run has ended
            expect(page.locator(".imggen-stats-table")).to_contain_text("successful", timeout=UI_TIMEOUT_MS)
            expect(page.locator(".imggen-gallery")).to_have_count(2, timeout=UI_TIMEOUT_MS)  # the panel's and the cell's
            page.screenshot(path=artifacts / "2-finished.png", timeout=UI_TIMEOUT_MS)
        except BaseException:
            page.screenshot(path=artifacts / "failed-pause-scenario.png", timeout=UI_TIMEOUT_MS)
            raise
        assert total == len(pause_styles) * 4
        assert image_count(paused_out) == total
        assert ledger_counts(paused_out)[DONE] == total
        shut_down_kernel(page)
        page.close()

        # Scenario 2: Stop ends the run with a consistent ledger; a headless rerun draws the rest.
        page, panel = start_run_in_browser(browser, lab, "stop.ipynb", errors)
        lab.note_kernels()
        try:
            stop_total = panel.wait_for_done(3)
            panel.click("stop")
            expect(panel.status).to_have_text("stopped", timeout=UI_TIMEOUT_MS)
            page.screenshot(path=artifacts / "3-stopped.png", timeout=UI_TIMEOUT_MS)
        except BaseException:
            page.screenshot(path=artifacts / "failed-stop-scenario.png", timeout=UI_TIMEOUT_MS)
            raise
        counts = ledger_counts(stopped_out)
        assert counts.get(RUNNING, 0) == 0, counts
        stopped_at = counts[DONE]
        assert stopped_at == image_count(stopped_out)
        assert 3 <= stopped_at < stop_total
        expect(panel.stats).to_contain_text(re.compile(rf"\b{stopped_at}/{stop_total} done"), timeout=UI_TIMEOUT_MS)
        shut_down_kernel(page)
        page.close()
        assert not lab.note_kernels(), "a notebook kernel is still running after its shutdown"

        request = StyleRequest(**{**run_parameters(stopped_out, None), "concurrency": 8})
        with concurrent.futures.ThreadPoolExecutor(1) as thread:  # Playwright's loop owns this thread
            summary = thread.submit(asyncio.run, run_styles(plan_styles(request))).result(timeout=60).summary
        assert summary.state == "finished", summary
        assert summary.progress.done == stop_total == image_count(stopped_out)
        assert ledger_counts(stopped_out)[DONE] == stop_total
        drawn = [r for r in generations(server) if r.status == 200]
        assert len(drawn) == total + stop_total, "an image was drawn twice across the stop and the rerun"
    assert not errors, f"browser console errors: {errors}"
    (artifacts / "timing.txt").write_text(f"pause, resume, stop and rerun in {time.monotonic() - began:.1f}s\n")


def test_run_all_of_the_instruction_and_training_set_notebooks_ends_with_stats_and_gallery(
        tmp_path, playwright, artifacts, klein):
    from playwright.sync_api import expect

    root = tmp_path / "lab"
    root.mkdir()
    copy_notebook_with_parameters(REPO / "notebooks" / "02_instruction_images.ipynb", root / "instructions.ipynb", {
        "flux_ckpt": str(klein), "predicted_instructions_root": str(REPO / "data/instructions/predicted_instructions"),
        "image_root": str(REPO / "data/instructions"), "output_root": str(tmp_path / "generated_images"),
        "num_inference_steps": 2, "height": 64, "width": 64, "device": "cpu", "num_gpus": 1})
    copy_notebook_with_parameters(REPO / "notebooks" / "03_training_set.ipynb", root / "trainset.ipynb", {
        "source": str(REPO / "data/trainset/sample_source.png"), "user_id": "lab", "actor_id": "hero", "target": 3,
        "local": True, "flux_ckpt": str(klein), "flux_size": 96, "output": str(tmp_path / "runs")})
    keyless = {name: value for name, value in os.environ.items()
               if name not in ("OPENAI_API_KEY", "REPLICATE_API_TOKEN", "AWS_USER_FILES_BUCKET")}
    errors: list[str] = []
    with (
        running_jupyterlab(root, tmp_path / "jupyter", keyless, artifacts / "jupyterlab-02-03.log") as lab,
        launched_chromium(playwright) as browser,
    ):
        # what each notebook's last cell shows once the run has ended: the stats, then the images
        for name, stats in (("instructions.ipynb", '"number of 0 generation": 1'),
                            ("trainset.ipynb", "'total_training_images': 3")):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda message, name=name: message.type == "error" and errors.append(
                f"{name}: {message.text} {message.location}"))
            try:
                open_and_run_all(page, lab, name)
                last_cell = page.locator(".jp-Cell").last
                expect(last_cell).to_contain_text(stats, timeout=120_000)
                expect(page.locator(".imggen-stats")).to_contain_text("3/3 done", timeout=UI_TIMEOUT_MS)
                assert last_cell.locator("img").count() >= 1, "the last cell shows no image"
                shown = page.locator(".jp-Notebook").inner_text(timeout=UI_TIMEOUT_MS)
                assert "still running" not in shown and "<NotebookJob" not in shown, shown[-2000:]
                page.screenshot(path=artifacts / f"{name}.png", timeout=UI_TIMEOUT_MS)
            except BaseException:
                page.screenshot(path=artifacts / f"failed-{name}.png", timeout=UI_TIMEOUT_MS)
                raise
            shut_down_kernel(page)
            page.close()
    assert not errors, f"browser console errors: {errors}"
