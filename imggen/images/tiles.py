"""Splitting a grid image into its tiles, exactly, for any image size and grid size.

Tile boundaries sit at ``i * size // grid``: the tiles cover the image with no gap or overlap, and
a remainder of pixels is spread over the rows and columns (sizes differ by at most one pixel).
"""

from __future__ import annotations

import io

from PIL import Image

Box = tuple[int, int, int, int]  # left, top, right, bottom


def _edges(size: int, grid: int) -> list[int]:
    return [i * size // grid for i in range(grid + 1)]


def tile_boxes(width: int, height: int, grid: int) -> list[Box]:
    """The ``grid`` x ``grid`` boxes of a ``width`` x ``height`` image, row-major."""
    if grid < 1:
        raise ValueError("the grid needs at least one row")
    if width < grid or height < grid:
        raise ValueError(f"a {width}x{height} image is too small for a {grid}x{grid} grid")
    xs, ys = _edges(width, grid), _edges(height, grid)
    return [(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(grid) for c in range(grid)]


def split_tiles(image: Image.Image, grid: int) -> list[Image.Image]:
    """The tiles of ``image``, row-major."""
    return [image.crop(box) for box in tile_boxes(image.width, image.height, grid)]


def tile_pngs(grid_image: bytes, grid: int) -> list[bytes]:
    """Every tile of an encoded grid image, row-major, as PNG bytes (lossless, for the upscaler); one decode."""
    with Image.open(io.BytesIO(grid_image)) as picture:
        tiles = split_tiles(picture.convert("RGB"), grid)
    encoded = []
    for tile in tiles:
        buffer = io.BytesIO()
        tile.save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return encoded


def tile_png(grid_image: bytes, grid: int, index: int) -> bytes:
    """Tile ``index`` of an encoded grid image, as PNG bytes."""
    with Image.open(io.BytesIO(grid_image)) as picture:
        tile = picture.convert("RGB").crop(tile_boxes(picture.width, picture.height, grid)[index])
    buffer = io.BytesIO()
    tile.save(buffer, format="PNG")
    return buffer.getvalue()

