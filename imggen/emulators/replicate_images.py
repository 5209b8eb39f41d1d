"""Real images for the emulated Replicate models: a tile grid derived from the input, and an upscale.

Each grid tile is the input image cropped, hue-shifted, sometimes mirrored and marked with a
translucent shape, all drawn from the prompt, seed and tile index, so tiles differ from each other
yet visibly come from the input. Chosen tiles can be made near-duplicates of earlier ones, the case
a uniqueness judge has to catch, and the first tiles of a grid near-copies of another grid's (a
model repeating itself across grids, which only a comparison across grids catches).
"""

from __future__ import annotations

import io
import math
import random
import re
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageEnhance, ImageOps, UnidentifiedImageError

_GRID_SHAPE = re.compile(r"\b([1-8])\s*[x×]\s*([1-8])\b", re.IGNORECASE)
_DEFAULT_GRID = 3
_FORMATS = {"jpg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png")}
_UPSCALE_FACTORS = {"None": 1, "2x": 2, "4x": 4, "6x": 6}


@dataclass(frozen=True)
class GridLayout:
    """How a grid was drawn: its shape, which tiles copy which (``{copy_index: source_index}``) and
    which copy the same tile of another grid."""

    rows: int
    cols: int
    duplicates: dict[int, int] = field(default_factory=dict)
    repeated: tuple[int, ...] = ()


def grid_shape(prompt: str) -> tuple[int, int]:
    """Rows and columns named in the prompt ("3x3", "4 x 4"), else 3 by 3."""
    match = _GRID_SHAPE.search(prompt)
    return (int(match[1]), int(match[2])) if match else (_DEFAULT_GRID, _DEFAULT_GRID)


def decode_image(data: bytes) -> Image.Image:
    """The image in ``data`` as RGB, or ``ValueError`` when it is not one."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot identify image file ({len(data)} bytes)") from error


def encode_image(image: Image.Image, output_format: str) -> tuple[bytes, str]:
    """``image`` as ``jpg`` or ``png`` bytes, with its content type."""
    pil_format, content_type = _FORMATS[output_format]
    buffer = io.BytesIO()
    image.save(buffer, format=pil_format, **({"quality": 92} if pil_format == "JPEG" else {}))
    return buffer.getvalue(), content_type


def output_size(aspect_ratio: str, source: Image.Image, megapixels: float) -> tuple[int, int]:
    """Width and height of about ``megapixels`` at ``aspect_ratio``, both multiples of 16."""
    if aspect_ratio == "match_input_image":
        ratio = source.width / source.height
    else:
        width_part, height_part = aspect_ratio.split(":")
        ratio = int(width_part) / int(height_part)
    height = math.sqrt(megapixels * 1_000_000 / ratio)
    return max(64, round(height * ratio / 16) * 16), max(64, round(height / 16) * 16)


def render_grid(
    source: Image.Image,
    prompt: str,
    *,
    size: tuple[int, int],
    seed: int,
    near_duplicates: int,
    repeat_of: tuple[str, int] | None = None,
    repeats: int = 0,
) -> tuple[Image.Image, GridLayout]:
    """A grid of tiles derived from ``source``; the last ``near_duplicates`` tiles copy the first ones, and
    the first ``repeats`` tiles nearly copy those of the grid drawn from ``repeat_of`` (its prompt and seed)."""
    rows, cols = grid_shape(prompt)
    tile_count = rows * cols
    copies = min(near_duplicates, tile_count // 2)
    duplicates = {tile_count - 1 - k: k for k in range(copies)}
    repeated = tuple(i for i in range(repeats if repeat_of else 0) if i < tile_count and i not in duplicates)
    width, height = size
    grid = Image.new("RGB", size)
    tiles: dict[int, Image.Image] = {}
    for index in range(tile_count):
        row, col = divmod(index, cols)
        box = (col * width // cols, row * height // rows, (col + 1) * width // cols, (row + 1) * height // rows)
        tile_size = (box[2] - box[0], box[3] - box[1])
        if index in duplicates:
            tile = _near_copy(tiles[duplicates[index]].resize(tile_size))
        elif index in repeated:
            earlier = random.Random(f"{repeat_of[0]}|{repeat_of[1]}|{index}")
            tile = _near_copy(_variation(source, tile_size, earlier, index, tile_count))
        else:
            tile = _variation(source, tile_size, random.Random(f"{prompt}|{seed}|{index}"), index, tile_count)
        tiles[index] = tile
        grid.paste(tile, box[:2])
    return grid, GridLayout(rows, cols, duplicates, repeated)


def plain_source(prompt: str) -> Image.Image:
    """A flat image of a colour drawn from ``prompt``, standing in when no input image is given."""
    return Image.new("RGB", (512, 512), tuple(random.Random(prompt).randbytes(3)))


def upscale(image: Image.Image, upscale_factor: str) -> Image.Image:
    """``image`` enlarged by ``"None"``, ``"2x"``, ``"4x"`` or ``"6x"``."""
    factor = _UPSCALE_FACTORS[upscale_factor]
    if factor == 1:
        return image.copy()
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.LANCZOS)


def _variation(
    source: Image.Image, size: tuple[int, int], rng: random.Random, index: int, tile_count: int
) -> Image.Image:
    """One tile: a crop of the fitted source, hue-shifted, mirrored on odd tiles, with a marked shape."""
    fitted = ImageOps.fit(source, size, Image.Resampling.BILINEAR)
    zoom = rng.uniform(0.6, 0.9)
    crop_w, crop_h = int(size[0] * zoom), int(size[1] * zoom)
    left, top = rng.randint(0, size[0] - crop_w), rng.randint(0, size[1] - crop_h)
    tile = fitted.crop((left, top, left + crop_w, top + crop_h)).resize(size, Image.Resampling.BILINEAR)
    tile = _shift_hue(tile, (index * 256 // tile_count + rng.randrange(16)) % 256)
    if index % 2:
        tile = ImageOps.mirror(tile)
    return _mark(tile, rng)


def _shift_hue(image: Image.Image, shift: int) -> Image.Image:
    hue, saturation, value = image.convert("HSV").split()
    hue = hue.point(lambda level: (level + shift) % 256)
    return Image.merge("HSV", (hue, saturation, value)).convert("RGB")


def _mark(tile: Image.Image, rng: random.Random) -> Image.Image:
    """Blend a translucent ellipse or rectangle of a random colour onto ``tile``."""
    overlay = Image.new("RGBA", tile.size, (0, 0, 0, 0))
    side = int(min(tile.size) * rng.uniform(0.3, 0.45))
    x, y = rng.randint(0, tile.width - side), rng.randint(0, tile.height - side)
    colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256), 140)
    draw = ImageDraw.Draw(overlay)
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + side, y + side), fill=colour)
    return Image.alpha_composite(tile.convert("RGBA"), overlay).convert("RGB")


def _near_copy(tile: Image.Image) -> Image.Image:
    """``tile`` a little brighter: what a model's repeated subject looks like."""
    return ImageEnhance.Brightness(tile).enhance(1.04)
