"""The emulated vision model's other skill: a one-sentence caption of one picture, from what it shows.

It really looks: the caption names the picture's main colour (the nearest of a few named colours
to its mean), whether it is light or dark, and whether it is wider or taller, so pictures that
differ get captions that differ, and the same picture always gets the same caption.
"""

from __future__ import annotations

from PIL import Image, ImageStat

COLOURS = {
    "red": (200, 40, 40), "orange": (230, 130, 30), "yellow": (220, 210, 40), "green": (50, 170, 60),
    "teal": (30, 160, 160), "blue": (40, 70, 200), "purple": (130, 50, 170), "pink": (230, 120, 180),
    "brown": (120, 80, 40), "grey": (128, 128, 128), "white": (240, 240, 240), "black": (15, 15, 15),
}


def caption_picture(picture: Image.Image) -> str:
    """``"A light picture in mostly blue tones, square."`` for a light, blue-ish square picture."""
    mean = ImageStat.Stat(picture.convert("RGB").resize((32, 32))).mean
    colour = min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(COLOURS[name], mean)))
    brightness = "light" if sum(mean) / 3 >= 128 else "dark"
    width, height = picture.size
    shape = "square" if abs(width - height) <= max(width, height) // 20 else "wide" if width > height else "tall"
    return f"A {brightness} picture in mostly {colour} tones, {shape}."
