"""A real JupyterLab on 127.0.0.1 driven by Debian's Chromium through Playwright, for widget tests.

:func:`running_jupyterlab` starts a token-less server with its own settings, workspaces and runtime
folders (the news toast off, ``window.jupyterapp`` exposed) and always stops it: SIGTERM, then
SIGKILL, then any kernel it left behind. :func:`launched_chromium` starts ``/usr/bin/chromium``
headless with the flags it needs as root in a container (Playwright's own browser download is never
used). :func:`open_and_run_all` opens a notebook and runs every cell without waiting for them.
Every wait here is bounded.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import nbformat
import psutil

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # Chromium refuses to run as root with its sandbox
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_START_S = 60.0
SERVER_STOP_S = 20.0

T = TypeVar("T")


def wait_for(probe: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout`` seconds saying ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JupyterLab:
    """A started server: where it listens, and the kernels it has started so far."""

    def __init__(self, process: subprocess.Popen, url: str) -> None:
        self.process = process
        self.url = url
        self._kernels: set[psutil.Process] = set()

    def notebook_url(self, name: str) -> str:
        """The notebook's page in a fresh workspace, so no earlier tab is restored next to it."""
        return f"{self.url}/lab/tree/{name}?reset"

    def note_kernels(self) -> set[psutil.Process]:
        """Remember the server's live kernel processes (to check after teardown that none is left)."""
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if "ipykernel_launcher" in " ".join(child.cmdline()):
                        self._kernels.add(child)
        return {kernel for kernel in self._kernels if kernel.is_running()}

    def stop(self) -> None:
        """SIGTERM (the server shuts its kernels down), SIGKILL after a while; fails if a kernel outlives it."""
        self.note_kernels()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=SERVER_STOP_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=SERVER_STOP_S)
        _, alive = psutil.wait_procs(list(self._kernels), timeout=10)
        for kernel in alive:
            with contextlib.suppress(psutil.Error):
                kernel.kill()
        assert not alive, f"kernels left running after the server stopped: {[k.pid for k in alive]}"


def _write_lab_settings(settings_dir: Path) -> None:
    """Turn off the "official Jupyter news?" toast, which covers the bottom right of the page."""
    notification = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True, exist_ok=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


def _server_ready(url: str, process: subprocess.Popen) -> bool:
    assert process.poll() is None, f"jupyter lab exited with {process.returncode} (see its log)"
    try:
        with urllib.request.urlopen(f"{url}/api/status", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def running_jupyterlab(root: Path, state: Path, env: dict[str, str], log: Path) -> Iterator[JupyterLab]:
    """JupyterLab serving ``root``, keeping its settings and runtime files under ``state``.

    ``env`` is the server's environment, which its kernels inherit. Its output goes to ``log``.
    """
    settings, workspaces = state / "settings", state / "workspaces"
    for folder in (settings, workspaces):
        folder.mkdir(parents=True, exist_ok=True)
    _write_lab_settings(settings)
    env = {
        **env,
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "JUPYTER_CONFIG_DIR": str(state / "config"),
        "JUPYTER_DATA_DIR": str(state / "data"),
        "IPYTHONDIR": str(state / "ipython"),
    }
    port = free_port()
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--allow-root",
        "--IdentityProvider.token=", "--ServerApp.password=", "--expose-app-in-browser",
        "--LabApp.news_url=None", f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={workspaces}",
    ]
    url = f"http://127.0.0.1:{port}"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as output:
        process = subprocess.Popen(command, env=env, cwd=root, stdout=output, stderr=subprocess.STDOUT)
    lab = JupyterLab(process, url)
    try:
        wait_for(lambda: _server_ready(url, process), SERVER_START_S, "JupyterLab to answer /api/status", every=0.2)
        yield lab
    finally:
        lab.stop()


def chromium_problem() -> str | None:
    """Why the browser test cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: run `apt-get update && apt-get install -y chromium` (Debian's Chromium)"
    return None


@contextlib.contextmanager
def launched_chromium(playwright) -> Iterator:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


def copy_notebook_with_parameters(source: Path, target: Path, parameters: dict) -> Path:
    """Copy ``source`` with a cell setting ``parameters`` right after its parameters cell, as papermill does."""
    notebook = nbformat.read(source, as_version=4)
    where = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    code = "# Parameters\n" + "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    notebook.cells.insert(where + 1, nbformat.v4.new_code_cell(code, metadata={"tags": ["injected-parameters"]}))
    nbformat.write(notebook, target)
    return target


_NOTEBOOK_READY = """(path) => {
    const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    if (!widget || !widget.context || widget.context.path !== path) return false;
    const kernel = widget.sessionContext.session && widget.sessionContext.session.kernel;
    return !!kernel && kernel.status === 'idle';
}"""

# The command's promise resolves only when every cell has finished: never hand it back to Playwright.
_RUN_ALL = "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }"

_SHUT_DOWN_KERNEL = """(ms) => Promise.race([
    window.jupyterapp.shell.currentWidget.sessionContext.shutdown().then(() => true),
    new Promise((resolve) => setTimeout(() => resolve(false), ms)),
])"""


def open_and_run_all(page, lab: JupyterLab, name: str, timeout_s: float = 90) -> None:
    """Open notebook ``name`` (relative to the server root), wait for its kernel to be idle, run all cells."""
    page.goto(lab.notebook_url(name), timeout=timeout_s * 1000)
    page.wait_for_function(_NOTEBOOK_READY, arg=name, timeout=timeout_s * 1000, polling=200)
    page.evaluate(_RUN_ALL)


def shut_down_kernel(page, timeout_s: float = 20) -> None:
    """Shut down the current notebook's kernel (no confirmation dialog), bounded."""
    assert page.evaluate(_SHUT_DOWN_KERNEL, timeout_s * 1000), "the kernel did not shut down in time"
