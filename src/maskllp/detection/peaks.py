"""Peaks of a heatmap: local maxima above a threshold, at least a minimum distance apart.

Every decision is local (it looks at the ``min_distance`` disk around a pixel and nothing else),
so a heatmap cut into tiles that overlap by more than ``min_distance + 1`` gives exactly the peaks of
the whole map; there is no greedy suppression whose chains could reach across tiles. Plateaus (equal
values within the disk) keep their first pixel in raster order.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _disk(radius: float) -> np.ndarray:
    r = max(int(np.floor(radius)), 1)
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    return (dy * dy + dx * dx) <= max(radius, 1.0) ** 2


def local_maxima(heatmap: np.ndarray, min_distance: float) -> np.ndarray:
    """Boolean (H, W): pixels that are the maximum of the disk of radius ``min_distance`` around them.

    heatmap: (H, W) float. Outside the map counts as -inf. A pixel with an equal value earlier in
    raster order inside its disk is not a maximum, so a plateau yields one peak.
    """
    hm = np.asarray(heatmap, np.float32)
    disk = _disk(min_distance)
    r = disk.shape[0] // 2
    before = disk.copy()
    before[r, r:] = False
    before[r + 1 :, :] = False
    neg = np.float32(-np.inf)
    highest = ndimage.maximum_filter(hm, footprint=disk, mode="constant", cval=neg)
    highest_before = ndimage.maximum_filter(hm, footprint=before, mode="constant", cval=neg)
    return (hm >= highest) & (hm > highest_before)


def subpixel_offset(heatmap: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(N, 2) float64 offsets in [-0.5, 0.5] from a parabola through each peak and its neighbours.

    rows, cols: (N,) int peak positions; neighbours outside the map count as the peak value.
    """
    hm = np.pad(np.asarray(heatmap, np.float64), 1, mode="edge")
    r, c = rows + 1, cols + 1
    out = np.zeros((len(rows), 2), np.float64)
    for axis, (dr, dc) in enumerate(((1, 0), (0, 1))):
        lo, mid, hi = hm[r - dr, c - dc], hm[r, c], hm[r + dr, c + dc]
        curv = lo - 2.0 * mid + hi
        with np.errstate(divide="ignore", invalid="ignore"):
            off = np.where(curv < 0, 0.5 * (lo - hi) / curv, 0.0)
        out[:, axis] = np.clip(off, -0.5, 0.5)
    return out


def peak_pixels(heatmap: np.ndarray, threshold: float, min_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) int64 of the local maxima (see :func:`local_maxima`) with value >= ``threshold``,
    in raster order. heatmap: (H, W) float; min_distance: pixels."""
    hm = np.asarray(heatmap, np.float32)
    rows, cols = np.nonzero(local_maxima(hm, min_distance) & (hm >= threshold))
    return rows.astype(np.int64), cols.astype(np.int64)


def find_peaks(
    heatmap: np.ndarray, threshold: float, min_distance: float, subpixel: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres of a heatmap.

    heatmap: (H, W) float. threshold: a peak's value must be >= it. min_distance: pixels.
    Returns yx (N, 2) float64 in the heatmap's index coordinates (refined to sub-pixel by a parabola
    when ``subpixel``), and the peak values (N,) float32, in raster order.
    """
    hm = np.asarray(heatmap, np.float32)
    rows, cols = peak_pixels(hm, threshold, min_distance)
    yx = np.stack([rows, cols], axis=1).astype(np.float64)
    if subpixel and len(rows):
        yx += subpixel_offset(hm, rows, cols)
    return yx, hm[rows, cols].astype(np.float32)
