"""``papermill --engine imggen``: papermill's own engine, the kernel's channels encrypted.

A kernel whose channels are plain TCP logs "Kernel is running over TCP without encryption" on every
start, into every papermill run's output. jupyter_client provisions CurveZMQ keys for a kernel itself
when its ``KernelManager.transport_encryption`` is ``"auto"`` and the kernelspec declares curve
(ipykernel's does); where libzmq has no curve, the channels go over IPC sockets instead. Either
way the warning has nothing to warn about, and the traffic between the two processes is private.

The package registers :class:`QuietEngine` under papermill's ``papermill.engine`` entry points.
papermill loads its entry points while it is imported, so this module is imported only by papermill
or after papermill (see :mod:`.headless`), never before it: its first line imports papermill's engines.
"""

from __future__ import annotations

from papermill.engines import NBClientEngine
from traitlets.config import Config

ENGINE = "imggen"


def quiet_kernel_settings() -> dict[str, str]:
    """``KernelManager`` settings for a kernel whose channels are encrypted (or local IPC sockets)."""
    import zmq
    from jupyter_client import KernelManager

    if zmq.has("curve") and "transport_encryption" in KernelManager.class_trait_names():  # jupyter_client 8.10+
        return {"transport_encryption": "auto"}
    return {"transport": "ipc"}


class QuietEngine(NBClientEngine):
    """papermill's nbclient engine, its kernels started with :func:`quiet_kernel_settings`."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
        kwargs.setdefault("config", Config({"KernelManager": quiet_kernel_settings()}))
        return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
