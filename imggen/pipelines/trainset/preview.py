"""What notebooks show of a finished training set: the grids with the chosen tiles outlined, and the
images with their captions."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from imggen.images.tiles import tile_boxes

from .run import TrainsetResult

CHOSEN, KEPT = (40, 220, 90), (250, 200, 40)  # outline colours: used for a training image / judged unique


def _row(pictures: list[Image.Image], height: int, gap: int = 6) -> Image.Image:
    scaled = [p.resize((max(1, p.width * height // p.height), height)) for p in pictures]
    sheet = Image.new("RGB", (sum(p.width for p in scaled) + gap * (len(scaled) - 1), height), "white")
    x = 0
    for picture in scaled:
        sheet.paste(picture, (x, 0))
        x += picture.width + gap
    return sheet


def grids_with_chosen_tiles(result: TrainsetResult, height: int = 320) -> Image.Image | None:
    """Every grid side by side; tiles used for training images in green, other unique tiles in yellow."""
    chosen = {(image.grid, image.tile) for image in result.images}
    pictures = []
    for drawn in result.grids:
        with Image.open(drawn.path) as opened:
            picture = opened.convert("RGB")
        draw = ImageDraw.Draw(picture)
        line = max(2, picture.width // 150)
        for index, box in enumerate(tile_boxes(picture.width, picture.height, drawn.grid)):
            colour = CHOSEN if (drawn.number, index) in chosen else KEPT if index in drawn.unique_tiles else None
            if colour:
                draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), outline=colour, width=line)
        pictures.append(picture)
    return _row(pictures, height) if pictures else None


def captioned_images(result: TrainsetResult) -> list[tuple[Path, str]]:
    """The finished training images with their captions, in slot order, for
    :func:`imggen.notebook.gallery_html`."""
    return [(image.path, f"training-image{image.slot}: {image.caption or ''}") for image in result.images]
