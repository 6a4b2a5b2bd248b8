"""Stamping disks around points on a pixel grid: the one loop behind heatmap targets and masks.

Both the detector's Gaussian targets (:func:`maskllp.detection.heatmap.centre_heatmap`) and the
tumour mask (:func:`maskllp.detection.mask.disk_mask`) visit, for every point, the grid pixels
within a radius of it. :func:`disk_pixels` does that in chunks of points, so memory stays bounded
whatever the number of points.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

WORK_BUDGET = 2_000_000
"""Candidate pixels examined per chunk of points (bounds the work buffers)."""


def disk_offsets(radius: float) -> np.ndarray:
    """(K, 2) int64 offsets (dy, dx) of a square window wide enough for a disk of ``radius``."""
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    return np.stack([dy.ravel(), dx.ravel()], axis=1).astype(np.int64)


def disk_pixels(centres: np.ndarray, shape: tuple[int, int], radius: float, window: float,
                closed: bool) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pixels of an (H, W) grid near points, chunk by chunk.

    centres: (N, 2) float64 in the grid's index coordinates. For each point, the candidate pixels
    are the square of half-side ``ceil(window)`` around its nearest pixel; of those, the ones inside
    the grid and within ``radius`` (``<=`` when ``closed``, ``<`` otherwise) are yielded as
    (rows (M,) int64, cols (M,) int64, squared distances (M,) float64), one triple per chunk.
    """
    pts = np.asarray(centres, np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return
    h, w = shape
    offsets = disk_offsets(window)
    limit = radius * radius
    chunk = max(1, WORK_BUDGET // len(offsets))
    for start in range(0, len(pts), chunk):
        p = pts[start : start + chunk]
        base = np.rint(p).astype(np.int64)
        rr = base[:, None, 0] + offsets[None, :, 0]
        cc = base[:, None, 1] + offsets[None, :, 1]
        d2 = (rr - p[:, None, 0]) ** 2 + (cc - p[:, None, 1]) ** 2
        near = d2 <= limit if closed else d2 < limit
        ok = near & (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        yield rr[ok], cc[ok], d2[ok]
