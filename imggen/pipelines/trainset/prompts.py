"""The instruction that asks an image-editing model for a grid of tiles, for any grid size."""

from __future__ import annotations

from collections.abc import Sequence

from .descriptions import Description


def tile_position(index: int, grid: int) -> str:
    """Where tile ``index`` (0-based, row-major) sits: "row 2, column 3"."""
    row, col = divmod(index, grid)
    return f"row {row + 1}, column {col + 1}"


def build_grid_prompt(descriptions: Sequence[Description], grid: int) -> str:
    """A prompt for a ``grid`` x ``grid`` image of distinct tiles in the input image's style.

    ``descriptions`` gives one subject per tile, row by row from the top left.
    """
    if grid < 1:
        raise ValueError("the grid needs at least one row")
    if len(descriptions) != grid * grid:
        raise ValueError(f"a {grid}x{grid} grid needs {grid * grid} descriptions, got {len(descriptions)}")
    tiles = "\n".join(
        f"- Tile {index + 1} ({tile_position(index, grid)}): {item.text}"
        for index, item in enumerate(descriptions)
    )
    return (
        f"Create a {grid}x{grid} grid of {grid * grid} equal square tiles with no borders or gaps. "
        "Every tile is a complete, separate picture drawn in exactly the artistic style, palette, "
        "lighting and technique of the input image, but showing a different subject:\n"
        f"{tiles}\n"
        "No two tiles may repeat a subject or composition. No text, labels or numbers."
    )
