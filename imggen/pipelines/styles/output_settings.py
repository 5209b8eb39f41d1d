"""What defines a style-matrix folder's images, for its rounds (see :mod:`imggen.engine.rounds`).

The model and its image parameters, and each style's prompt template; not the pacing (rpm,
concurrency, budget, mode), nor which samples or styles a run draws, which may change between runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imggen.backends.flux2_checkpoint import checkpoint_setting
from imggen.backends.openai_models import ImageModelSpec

from .inputs import Style

if TYPE_CHECKING:
    from .plan import StyleRequest


def output_settings(request: StyleRequest, spec: ImageModelSpec | None, params: dict, styles: list[Style]) -> dict:
    """What defines the folder's images: the model and its parameters, and each style's prompt template."""
    if spec is not None:
        settings = {"model": spec.id, "size": params["size"] or spec.default_size,
                    "quality": params["quality"] or spec.default_quality,
                    **{f"dall-e {name}": value for name, value in params["extra"].items()}}
    else:
        settings = {"model": checkpoint_setting(request.flux_ckpt), "size": request.size, "steps": request.flux_steps}
    return {**settings, **{f"style {style.name!r}": style.template for style in styles}}
