"""Notebooks run headless by papermill, and kernels started from code, without plain-TCP channels.

:func:`execute_notebook` is ``papermill.execute_notebook`` on the project's engine
(:mod:`.papermill_engine`), which the project's own runs (``imggen demo``, the tests) use;
:func:`quiet_kernel_settings` gives any ``KernelManager`` the same channels.
"""

from __future__ import annotations

import os
from typing import Any

import papermill  # first: importing it loads the package's entry points, .papermill_engine among them
from papermill.engines import papermill_engines

from .papermill_engine import ENGINE, QuietEngine, quiet_kernel_settings

__all__ = ["execute_notebook", "quiet_kernel_settings"]


def execute_notebook(input_path: str | os.PathLike, output_path: str | os.PathLike, **options: Any):
    """``papermill.execute_notebook`` on :class:`~.papermill_engine.QuietEngine`; ``options`` are papermill's."""
    papermill_engines.register(ENGINE, QuietEngine)  # also where the package's entry points are not installed
    return papermill.execute_notebook(str(input_path), str(output_path), engine_name=ENGINE, **options)
