"""The training-set pipeline (seed 002): grids from one source image, unique tiles, upscaled, stored.

``TrainingDataGenerator`` and ``ReplicateService`` (from :mod:`imggen.backends.replicate_service`)
are the seed's API; ``run_trainset`` with ``open_parts`` is the same job for async callers;
``imggen trainset`` is its command.

``descriptions`` reads the pool of tile subjects and gives each grid its share (the source image is
read by :func:`~imggen.backends.image_download.read_image_source`), ``plan`` holds the options and
turns them into tasks, ``work`` is what one training image does, ``tile_pool`` serves unique tiles
to it from the grids ``grids`` makes, ``layout`` owns where every file goes, ``run`` runs a plan,
``parts`` picks the drawer, tile judge, upscaler and captioner (all providers, in
:mod:`imggen.backends`) and the store, ``captions`` writes the captions, ``preview`` shows a
finished set in notebooks and ``cli`` is ``imggen trainset``.
"""

from imggen.backends.replicate_service import ReplicateService

from .descriptions import Description, DescriptionPool, grid_subjects
from .layout import job_root
from .parts import TrainsetChoices, TrainsetParts, open_parts
from .plan import TrainsetOptions, plan_trainset
from .preview import captioned_images, grids_with_chosen_tiles
from .run import TrainingImage, TrainsetResult, run_trainset
from .service import TrainingDataGenerator

__all__ = [
    "Description",
    "DescriptionPool",
    "ReplicateService",
    "TrainingDataGenerator",
    "TrainingImage",
    "TrainsetChoices",
    "TrainsetOptions",
    "TrainsetParts",
    "TrainsetResult",
    "captioned_images",
    "grid_subjects",
    "grids_with_chosen_tiles",
    "job_root",
    "open_parts",
    "plan_trainset",
    "run_trainset",
]
