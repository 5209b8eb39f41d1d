"""imggen: build image datasets with generative models, resumable, rate limited, from notebooks or the command line.

The engine's public names are importable from here; pipelines and backends live in subpackages.
Importing ``imggen`` never imports torch.
"""

from .engine.control import RunControl
from .engine.errors import ErrorKind, RateHint, TaskError
from .engine.job import JobFiles, run_job
from .engine.runner import RateLimit, RunnerConfig, RunSummary
from .engine.tasks import Outcome, Task

__version__ = "0.1.0"

__all__ = [
    "ErrorKind",
    "JobFiles",
    "Outcome",
    "RateHint",
    "RateLimit",
    "RunControl",
    "RunSummary",
    "RunnerConfig",
    "Task",
    "TaskError",
    "TrainingDataGenerator",
    "run_job",
]


def __getattr__(name: str):
    # The training-set API is imported on first use: it pulls in the provider clients.
    if name == "TrainingDataGenerator":
        from .pipelines.trainset import TrainingDataGenerator

        return TrainingDataGenerator
    raise AttributeError(f"module 'imggen' has no attribute {name!r}")
