"""Small stain images centred on each detected cell, for a cell network that learns its own features.

The stain measurements (:mod:`maskllp.detection.measurements`) describe a cell by fixed rings and
sectors; a convolutional network on the cell's own neighbourhood can learn what those summaries
miss (where along the outline the DAB lies, its texture, the neighbour it belongs to). A patch is
the hematoxylin and DAB optical density (:mod:`maskllp.stains`) of a square of ``PATCH_SIDE_UM``
microns centred on the cell, on the stage-1 model grid, stored as uint8 (``OD_STEPS_PER_UNIT`` steps
per unit of OD, densities above ``255 / OD_STEPS_PER_UNIT`` clipped) so that a cohort's patches fit
in memory: 4.6 KB per cell at 0.5 um/px.
"""

from __future__ import annotations

import math

import numpy as np

PATCH_SIDE_UM = 24.0
"""Side of a cell's patch in microns: a carcinoma cell (15-25 um across) and the edge of its neighbours."""
OD_STEPS_PER_UNIT = 64.0
"""uint8 steps per unit of optical density (log10): 0.016 OD resolution, densities up to 3.98."""
PATCH_CHANNELS = ("hematoxylin", "DAB")


def patch_side_px(px_per_um: float) -> int:
    """Side in pixels of a cell's patch at ``px_per_um`` (even, at least 8)."""
    return max(8, 2 * round(PATCH_SIDE_UM * px_per_um / 2))


def patch_reach_px(px_per_um: float) -> int:
    """How far from a cell's pixel its patch reaches, in pixels (the context a tile needs)."""
    return math.ceil(patch_side_px(px_per_um) / 2)


def cell_patches(stains: np.ndarray, yx: np.ndarray, px_per_um: float) -> np.ndarray:
    """The hematoxylin / DAB patch of each cell.

    stains: (H, W, 3) float (hematoxylin, eosin, DAB) optical densities of a window; yx: (N, 2)
    float cell centres in the window's index coordinates; px_per_um: the window's pixels per
    micron. A patch of side S = :func:`patch_side_px` covers rows ``round(y) - S/2 ...
    round(y) + S/2 - 1`` (and the same columns); pixels past the window's edge repeat the edge.
    Returns (N, 2, S, S) uint8: round(OD * ``OD_STEPS_PER_UNIT``), clipped to 0..255.
    """
    yx = np.asarray(yx, np.float64).reshape(-1, 2)
    side = patch_side_px(px_per_um)
    out = np.zeros((len(yx), len(PATCH_CHANNELS), side, side), np.uint8)
    if len(yx) == 0:
        return out
    quantised = np.clip(np.rint(stains[..., [0, 2]] * OD_STEPS_PER_UNIT), 0, 255).astype(np.uint8)
    windows = CellWindows(quantised, side, side // 2)
    centres = np.rint(yx).astype(np.int64)
    for start in range(0, len(yx), 512):
        out[start: start + 512] = windows.at(centres[start: start + 512])
    return out


class CellWindows:
    """Squares of ``side`` pixels of an (H, W) or (H, W, C) image around integer cell centres, pixels
    past the image's edge repeating the edge.

    ``at(centres)`` for (n, 2) int centres is (n, side, side), or (n, C, side, side), with
    ``out[i, ..., a, b] == image[clip(cy - before + a), clip(cx - before + b)]`` exactly, wherever
    the centres lie: the image is edge-padded once and each square is a copy of its rows out of a
    strided view, not one indexed pixel at a time (the stain measurements and the patches both cut
    their cells' neighbourhoods this way)."""

    def __init__(self, image: np.ndarray, side: int, before: int) -> None:
        self.shape = image.shape[:2]
        self.side, self.before = side, before
        widths = ((side, side), (side, side)) + ((0, 0),) * (image.ndim - 2)
        self.view = np.lib.stride_tricks.sliding_window_view(np.pad(image, widths, mode="edge"),
                                                             (side, side), axis=(0, 1))

    def at(self, centres: np.ndarray) -> np.ndarray:
        h, w = self.shape
        after = self.side - 1 - self.before
        # A centre more than ``after`` above the image (or ``before`` below it) sees only edge rows,
        # as it does when clipped to there; the padding of ``side`` then holds every square.
        top = np.clip(centres[:, 0], -after, h - 1 + self.before) - self.before + self.side
        left = np.clip(centres[:, 1], -after, w - 1 + self.before) - self.before + self.side
        return self.view[top, left]


def patches_to_od(patches: np.ndarray) -> np.ndarray:
    """(N, 2, S, S) uint8 patches -> (N, 2, S, S) float32 optical densities."""
    return np.asarray(patches, np.float32) / OD_STEPS_PER_UNIT
