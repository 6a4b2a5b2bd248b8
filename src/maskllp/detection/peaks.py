"""Peaks of a heatmap: local maxima above a threshold, at least a minimum distance apart.

Every decision is local (it looks at the ``min_distance`` disk around a pixel and nothing else),
so a heatmap cut into tiles that overlap by more than ``min_distance + 1`` gives exactly the peaks of
the whole map; there is no greedy suppression whose chains could reach across tiles. Plateaus (equal
values within the disk) keep their first pixel in raster order.
"""

from __future__ import annotations

import numpy as np


def _disk(radius: float) -> np.ndarray:
    r = max(int(np.floor(radius)), 1)
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    return (dy * dy + dx * dx) <= max(radius, 1.0) ** 2


def _disk_offsets(min_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """(dy, dx) int64 offsets of the disk of radius ``min_distance`` and a boolean (K,) that marks
    the offsets earlier in raster order than the centre (rows above, and the left of its row)."""
    disk = _disk(min_distance)
    r = disk.shape[0] // 2
    dy, dx = np.nonzero(disk)
    dy, dx = dy - r, dx - r
    return np.stack([dy, dx]).astype(np.int64), (dy < 0) | ((dy == 0) & (dx < 0))


def _maxima_among(hm: np.ndarray, rows: np.ndarray, cols: np.ndarray, min_distance: float) -> np.ndarray:
    """(N,) bool: whether each pixel (rows, cols) is the maximum of its disk (the rule of
    :func:`local_maxima`), by looking up the disk's pixels of each one only."""
    (dy, dx), before = _disk_offsets(min_distance)
    r = int(max(np.abs(dy).max(), np.abs(dx).max()))
    padded = np.pad(hm, r, mode="constant", constant_values=-np.inf)
    keep = np.ones(len(rows), bool)
    for start in range(0, len(rows), 4096):  # bounded memory: 4096 x the disk's pixels at a time
        part = slice(start, start + 4096)
        centre = hm[rows[part], cols[part]]
        around = padded[rows[part, None] + r + dy[None], cols[part, None] + r + dx[None]]  # (n, K)
        earlier = np.where(before[None], around, -np.inf).max(axis=1)
        keep[part] = (centre >= around.max(axis=1)) & (centre > earlier)
    return keep


def _candidates(hm: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the pixels >= ``threshold`` that are >= their four neighbours (which every
    disk of :func:`_disk` holds): a superset of the peaks, found with a few array comparisons."""
    ok = hm >= threshold
    ok[1:] &= hm[1:] >= hm[:-1]
    ok[:-1] &= hm[:-1] >= hm[1:]
    ok[:, 1:] &= hm[:, 1:] >= hm[:, :-1]
    ok[:, :-1] &= hm[:, :-1] >= hm[:, 1:]
    return np.nonzero(ok)


def local_maxima(heatmap: np.ndarray, min_distance: float) -> np.ndarray:
    """Boolean (H, W): pixels that are the maximum of the disk of radius ``min_distance`` around them.

    heatmap: (H, W) float. Outside the map counts as -inf. A pixel with an equal value earlier in
    raster order inside its disk is not a maximum, so a plateau yields one peak. Computed on the
    pixels that are at least their four neighbours only (a smooth heatmap has a few hundred per
    tile); the same result as a maximum filter with the disk as footprint, which costs the disk's
    area per pixel.
    """
    hm = np.asarray(heatmap, np.float32)
    rows, cols = _candidates(hm, -np.inf)
    out = np.zeros(hm.shape, bool)
    keep = _maxima_among(hm, rows, cols, min_distance)
    out[rows[keep], cols[keep]] = True
    return out


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
    rows, cols = _candidates(hm, threshold)
    keep = _maxima_among(hm, rows, cols, min_distance)
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


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
