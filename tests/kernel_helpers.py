"""A real Jupyter kernel driven with jupyter_client: run code, read values, click widgets as JupyterLab does.

JupyterLab 4.4+ sends widget messages on a kernel subshell (``open_subshell``), older front ends on
the main shell; :meth:`Kernel.click` sends the exact ``comm_msg`` a Button click sends.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Iterator

from jupyter_client.manager import KernelManager

from imggen.notebook.headless import quiet_kernel_settings


class Kernel:
    def __init__(self, client) -> None:
        self.client = client
        self.subshell_id: str | None = None

    def run(self, code: str, timeout: float = 30) -> str:
        chunks: list[str] = []

        def hook(message) -> None:
            if message["msg_type"] == "stream":
                chunks.append(message["content"]["text"])
            if message["msg_type"] in ("display_data", "execute_result"):
                chunks.append(message["content"]["data"].get("text/plain", "") + "\n")
            if message["msg_type"] == "error":
                chunks.append("\n".join(message["content"]["traceback"]))

        reply = self.client.execute_interactive(code, output_hook=hook, timeout=timeout)
        assert reply["content"]["status"] == "ok", "".join(chunks)
        return "".join(chunks)

    def value(self, expression: str):
        return json.loads(self.run(f"import json; print(json.dumps({expression}))"))

    def open_subshell(self) -> None:
        self.client.control_channel.send(self.client.session.msg("create_subshell_request", {}))
        self.subshell_id = self.client.get_control_msg(timeout=10)["content"]["subshell_id"]

    def click(self, button: str) -> None:
        """Click ``job.<button>_button`` of the kernel's ``job`` (pause, resume or stop)."""
        model_id = self.value(f"job.{button}_button.model_id")
        message = self.client.session.msg(
            "comm_msg", {"comm_id": model_id, "data": {"method": "custom", "content": {"event": "click"}}}
        )
        if self.subshell_id is not None:
            message["header"]["subshell_id"] = self.subshell_id
        self.client.shell_channel.send(message)


@contextlib.contextmanager
def started_kernel(**kwargs) -> Iterator[Kernel]:
    """A fresh ``python3`` kernel, on channels that are not plain TCP; ``kwargs`` go to ``start_kernel``
    (e.g. ``env=``)."""
    manager = KernelManager(kernel_name="python3", **quiet_kernel_settings())
    manager.start_kernel(**kwargs)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        yield Kernel(client)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def wait_until(kernel: Kernel, expression: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not kernel.value(expression):
        assert time.monotonic() < deadline, f"never true: {expression}"
        time.sleep(0.05)
