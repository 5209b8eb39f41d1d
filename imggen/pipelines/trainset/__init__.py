"""The training-set pipeline (seed 002): grids from one source image, unique tiles, upscaled, stored.

``TrainingDataGenerator`` and ``ReplicateService`` are the seed's API; ``run_trainset`` with
``open_parts`` is the same job for async callers; ``imggen trainset`` is its command.
"""

from .descriptions import Description, DescriptionPool, DescriptionRotation
from .run import TrainingImage, TrainsetOptions, TrainsetParts, TrainsetResult, job_root, run_trainset
from .parts import TrainsetChoices, open_parts
from .preview import grids_with_chosen_tiles, training_images
from .service import ReplicateService, TrainingDataGenerator

__all__ = [
    "Description",
    "DescriptionPool",
    "DescriptionRotation",
    "ReplicateService",
    "TrainingDataGenerator",
    "TrainingImage",
    "TrainsetChoices",
    "TrainsetOptions",
    "TrainsetParts",
    "TrainsetResult",
    "grids_with_chosen_tiles",
    "job_root",
    "open_parts",
    "run_trainset",
    "training_images",
]
