"""The emulated vision model's one skill: saying which tiles of a grid picture are unique.

It really looks: the picture is split into ``grid`` x ``grid`` tiles, each tile is shrunk to a
small RGB thumbnail, and two tiles count as the same when their thumbnails differ by less than
``threshold`` (mean absolute difference per channel, 0-255). A tile is unique when no other tile
is the same as it. Indices are 0-based, row-major. The grid size is read from the question: the
first ``NxN`` (or ``N x N``, ``N×N``) in the text.
"""

from __future__ import annotations

import re

from PIL import Image, ImageChops, ImageStat

THUMBNAIL = (16, 16)
DEFAULT_THRESHOLD = 10.0
_GRID_PATTERN = re.compile(r"\b(\d{1,2})\s*[x×]\s*(\d{1,2})\b", re.IGNORECASE)


def grid_size_from_text(text: str) -> int | None:
    """N from the first square ``NxN`` in ``text`` (N >= 1), or None."""
    for match in _GRID_PATTERN.finditer(text):
        rows, cols = int(match.group(1)), int(match.group(2))
        if rows == cols and rows >= 1:
            return rows
    return None


def split_grid(picture: Image.Image, grid: int) -> list[Image.Image]:
    """The ``grid`` x ``grid`` tiles of ``picture``, row-major."""
    width, height = picture.size
    tiles = []
    for row in range(grid):
        for col in range(grid):
            box = (col * width // grid, row * height // grid, (col + 1) * width // grid, (row + 1) * height // grid)
            tiles.append(picture.crop(box))
    return tiles


def _thumbnail(tile: Image.Image) -> Image.Image:
    return tile.convert("RGB").resize(THUMBNAIL, Image.Resampling.BOX)


def _distance(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference (0-255) between two thumbnails."""
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def unique_tiles(tiles: list[Image.Image], threshold: float = DEFAULT_THRESHOLD) -> list[int]:
    """Indices of the tiles that match no other tile."""
    thumbs = [_thumbnail(t) for t in tiles]
    duplicated: set[int] = set()
    for i in range(len(thumbs)):
        for j in range(i + 1, len(thumbs)):
            if _distance(thumbs[i], thumbs[j]) < threshold:
                duplicated.update((i, j))
    return [i for i in range(len(thumbs)) if i not in duplicated]
