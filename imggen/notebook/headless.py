"""Notebooks run headless by papermill, and kernels started from code, without plain-TCP channels.

A kernel whose channels are plain TCP logs "Kernel is running over TCP without encryption" on every
start, into every papermill run's output. jupyter_client provisions CurveZMQ keys for a kernel itself
when its ``KernelManager.transport_encryption`` is ``"auto"`` and the kernelspec declares curve
(ipykernel's does); where libzmq has no curve, the channels go over IPC sockets instead. Either
way the warning has nothing to warn about, and the traffic between the two processes is private.
"""

from __future__ import annotations

import os
from typing import Any


def quiet_kernel_settings() -> dict[str, str]:
    """``KernelManager`` settings for a kernel whose channels are encrypted (or local IPC sockets)."""
    import zmq
    from jupyter_client import KernelManager

    if zmq.has("curve") and "transport_encryption" in KernelManager.class_trait_names():  # jupyter_client 8.10+
        return {"transport_encryption": "auto"}
    return {"transport": "ipc"}


def execute_notebook(input_path: str | os.PathLike, output_path: str | os.PathLike, **options: Any):
    """``papermill.execute_notebook`` with :func:`quiet_kernel_settings`; ``options`` are papermill's."""
    import papermill
    from traitlets.config import Config

    return papermill.execute_notebook(str(input_path), str(output_path),
                                      config=Config({"KernelManager": quiet_kernel_settings()}), **options)
