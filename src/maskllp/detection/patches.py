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
    h, w = stains.shape[:2]
    quantised = np.clip(np.rint(stains[..., [0, 2]] * OD_STEPS_PER_UNIT), 0, 255).astype(np.uint8)
    # Edge-padded once, then one strided view: each cell's patch is a copy of S rows, not S * S
    # indexed pixels. A centre more than S / 2 outside the window sees only edge pixels, so it is
    # clipped to S / 2 outside, where it sees the same.
    half = side // 2
    padded = np.pad(quantised, ((side, side), (side, side), (0, 0)), mode="edge")
    view = np.lib.stride_tricks.sliding_window_view(padded, (side, side), axis=(0, 1))  # (.., .., 2, S, S)
    centres = np.rint(yx).astype(np.int64)
    top = np.clip(centres[:, 0], -half, h - 1 + half) + side - half
    left = np.clip(centres[:, 1], -half, w - 1 + half) + side - half
    for start in range(0, len(yx), 512):
        out[start: start + 512] = view[top[start: start + 512], left[start: start + 512]]
    return out


def patches_to_od(patches: np.ndarray) -> np.ndarray:
    """(N, 2, S, S) uint8 patches -> (N, 2, S, S) float32 optical densities."""
    return np.asarray(patches, np.float32) / OD_STEPS_PER_UNIT
