"""Perceptual hashes of tiles: two tiles look alike when both their structure (pHash) and their
colours (colour hash) are within a threshold of bits, so a recoloured copy and a re-framed
same-coloured tile both count as different.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

DEFAULT_DUP_THRESHOLD = 6  # bits of 64 (pHash) and 42 (colour hash); distinct emulated tiles are 12 or more apart
COLOUR_BITS = 3


@dataclass(frozen=True)
class TileHash:
    """The perceptual hashes of one tile."""

    shape: object  # imagehash.ImageHash of pHash
    colour: object  # imagehash.ImageHash of the colour hash

    @classmethod
    def of(cls, image: Image.Image) -> "TileHash":
        import imagehash  # a declared dependency; imported here to keep ``import imggen`` light

        return cls(imagehash.phash(image), imagehash.colorhash(image, binbits=COLOUR_BITS))

    @classmethod
    def of_png(cls, data: bytes) -> "TileHash":
        with Image.open(io.BytesIO(data)) as picture:
            return cls.of(picture.convert("RGB"))

    @classmethod
    def from_text(cls, text: str) -> "TileHash":
        import imagehash

        shape, _, colour = text.partition(":")
        return cls(imagehash.hex_to_hash(shape), imagehash.hex_to_flathash(colour, COLOUR_BITS))

    def __str__(self) -> str:
        return f"{self.shape}:{self.colour}"

    def distance(self, other: "TileHash") -> int:
        """The larger of the two hash distances, in bits: two tiles look alike when it is within the threshold."""
        return int(max(self.shape - other.shape, self.colour - other.colour))
