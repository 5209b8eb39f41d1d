"""Captioners that say what a tile shows: the subject its grid asked for (free), or a vision model's sentence.

A captioner answers one plain sentence ("" for nothing). The vision captioner's answers are paid:
each is booked in the run folder's ledger under the tile's key (:mod:`.vision_calls`) before it is used.
"""

from __future__ import annotations

from typing import Protocol

from .openai_models import DEFAULT_VISION_MODEL
from .vision_calls import VisionCalls

CAPTION_CHOICES = ("description", "gpt")
CAPTION_QUESTION = (
    "Write a caption for this image for training an image model: one plain sentence saying what it shows "
    "(subject, setting, action), not its style. Answer with the caption only."
)


class Captioner(Protocol):
    name: str
    vision_model: str | None  # the paid vision model it asks, None for free captions

    async def describe(self, tile_png: bytes, subject: str | None, *, key: str, calls: VisionCalls) -> str:
        """What tile ``key`` shows ("" for nothing); ``subject`` is what its grid asked for (None when
        unknown); a paid answer is booked in ``calls``."""


class DescriptionCaptioner:
    """The subject the grid's prompt asked for, as it stands: free and instant."""

    name = "description"
    vision_model = None

    async def describe(self, tile_png: bytes, subject: str | None, *, key: str, calls: VisionCalls) -> str:
        """Free: nothing is booked."""
        return subject or ""


class VisionCaptioner:
    """A vision model's caption of the tile, through :class:`~imggen.backends.openai_images.OpenAIImageBackend`."""

    name = "gpt"

    def __init__(self, backend, *, model: str | None = None) -> None:
        self._backend = backend
        self.vision_model = model or DEFAULT_VISION_MODEL

    async def describe(self, tile_png: bytes, subject: str | None, *, key: str, calls: VisionCalls) -> str:
        answer = await calls.ask(lambda: self._backend.ask_about_image(
            tile_png, CAPTION_QUESTION, model=self.vision_model, what="captioning"))
        return calls.take(key, answer, lambda text: " ".join(text.split()).strip("\"'"))


def make_captioner(choice: str, *, openai_backend=None, model: str | None = None) -> Captioner:
    """``description`` or ``gpt`` (which needs ``openai_backend``)."""
    if choice == "description":
        return DescriptionCaptioner()
    if choice == "gpt":
        if openai_backend is None:
            raise ValueError("gpt captions need an OpenAI backend")
        return VisionCaptioner(openai_backend, model=model)
    raise ValueError(f"unknown caption source {choice!r}: choose {' or '.join(CAPTION_CHOICES)}")
