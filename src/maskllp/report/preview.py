"""A small preview of stage 1 on one core: the image, the tumour mask tinted, the cells as dots."""

from __future__ import annotations

import numpy as np

from maskllp.classes import QUPATH_COLOURS, CellClass
from maskllp.detection.mask import disk_mask
from maskllp.detection.tiling import tile_grid
from maskllp.io.grid import ImageSource, ModelGrid, read_model_window

MASK_TINT = np.array([255, 200, 0], np.float32)
"""Colour laid over the tumour mask (amber)."""


def preview_scale(shape: tuple[int, int], max_side: int) -> float:
    """Level-0 pixels per preview pixel so the longer side fits ``max_side`` (never below 1)."""
    return max(1.0, max(shape) / float(max_side))


def read_preview(image: ImageSource, scale: float) -> np.ndarray:
    """(ceil(H / scale), ceil(W / scale), 3) uint8: the image reduced, read in bands (bounded memory)."""
    grid = ModelGrid(tuple(image.shape), scale)
    out = np.empty((*grid.shape, 3), np.uint8)
    for t in tile_grid((0, 0, *grid.shape), 256, 0, 1):
        out[t.top : t.top + t.height, t.left : t.left + t.width] = read_model_window(
            image, grid, t.top, t.left, t.height, t.width)
    return out


def draw_preview(rgb: np.ndarray, scale: float, yx: np.ndarray, classes: np.ndarray, mask: np.ndarray,
                 dot_radius: float = 1.5) -> np.ndarray:
    """Overlay on a reduced image.

    rgb: (h, w, 3) uint8 preview; scale: level-0 pixels per preview pixel; yx: (N, 2) level-0 cell
    positions; classes: (N,) CellClass values (dot colours are QuPath's class colours); mask: (h, w)
    bool tumour mask at the preview's resolution, tinted at 35 %. Returns (h, w, 3) uint8.
    """
    out = rgb.astype(np.float32)
    out[mask] = 0.65 * out[mask] + 0.35 * MASK_TINT
    centre = (np.asarray(yx, np.float64) + 0.5) / scale - 0.5
    for cls in np.unique(classes):
        colour = np.array(QUPATH_COLOURS[CellClass(int(cls))], np.float32)
        dots = disk_mask(centre[classes == cls], mask.shape, dot_radius)
        out[dots] = colour
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
