"""Captions of training images: ``training-imageN.txt`` beside each image (the kohya / ai-toolkit layout)
and one ``metadata.jsonl`` of ``file_name`` and ``text`` for ``datasets.load_dataset("imagefolder")``.

A caption is the actor's trigger word, then what the tile shows: the subject its grid asked for
(``description``, free, the default) or a vision model's one-sentence answer (``gpt``). A vision
answer is saved in the run folder (``captions/gpt/upscale-{grid}-{tile}.txt``) the moment it
comes, so a rerun asks for no caption twice; a refusal or an empty answer falls back to the
description. Each vision answer is paid: it is booked in the run folder's ledger under the tile's key
(:mod:`.vision_calls`) before the caption is saved, used, or wasted when the description is taken
instead; the training image that uses the caption carries its cost (``VisionCalls.bill``). Both
files go to the store the images go to (an S3 prefix or a folder);
``metadata.jsonl`` is rebuilt from the ledger at the end of every run.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from imggen.backends.captioners import Captioner, DescriptionCaptioner
from imggen.backends.vision_calls import VisionCalls
from imggen.engine.errors import ErrorKind, TaskError
from imggen.engine.ledger import DONE, Ledger
from imggen.storage.atomic import atomic_write_bytes
from imggen.storage.stores import ImageStore

log = logging.getLogger("imggen.trainset")

METADATA = "metadata.jsonl"
TEXT_TYPE = "text/plain; charset=utf-8"


def caption_text(trigger_word: str | None, description: str) -> str:
    """``"{trigger_word}, {description}"``, leaving out whichever is empty."""
    return ", ".join(part.strip() for part in (trigger_word or "", description) if part and part.strip())


def caption_name(image_name: str) -> str:
    """``training-image3.txt`` for ``training-image3.jpg``."""
    return f"{Path(image_name).stem}.txt"


class TrainingCaptions:
    """The captions of one run folder ``root``: made once per tile, stored beside the images."""

    def __init__(self, root: Path, captioner: Captioner, trigger_word: str | None = None, *,
                 calls: VisionCalls) -> None:
        self.root = root
        self.captioner = captioner
        self.trigger_word = trigger_word
        self.calls = calls  # where a paid caption is booked, and billed to its training image from

    async def caption(self, tile_key: str, subject: str, tile_png: bytes) -> str:
        """The caption of tile ``tile_key``, whose grid asked it to show ``subject``; asked for at most
        once per run folder."""
        saved = self.root / "captions" / self.captioner.name / f"{tile_key}.txt"
        if saved.is_file():
            return caption_text(self.trigger_word, saved.read_text(encoding="utf-8"))
        try:
            described = await self.captioner.describe(tile_png, subject, key=tile_key, calls=self.calls) or subject
        except TaskError as error:
            if error.kind is not ErrorKind.PERMANENT:
                raise  # the training image is tried again, its upscale kept
            log.warning("%s: no %s caption (%s); using its description", tile_key, self.captioner.name, error.message)
            described = subject
        if self.captioner.name != DescriptionCaptioner.name:
            await asyncio.to_thread(atomic_write_bytes, saved, described.encode("utf-8"))
        return caption_text(self.trigger_word, described)

    async def store_metadata(self, store: ImageStore, image_keys: list[str]) -> None:
        """Write ``metadata.jsonl`` for the finished training images among ``image_keys`` to ``store``."""
        lines = []
        with Ledger(self.root) as ledger:
            for key in image_keys:
                record = ledger.task(key)
                if record is not None and record["status"] == DONE and record["outputs"]:
                    name = f"{key}{Path(record['outputs'][0]).suffix}"
                    text = (record["provenance"] or {}).get("caption")
                    lines.append(json.dumps({"file_name": name, "text": text}, ensure_ascii=False))
        if not lines:
            return
        try:
            await store.put(METADATA, ("\n".join(lines) + "\n").encode("utf-8"), "application/jsonl")
        except TaskError as error:
            log.warning("%s was not stored (%s); the next run writes it", METADATA, error.message)
