"""Gaussian heatmap targets of cell centres (what the detector U-Net learns to regress)."""

from __future__ import annotations

import numpy as np


def disk_offsets(radius: float) -> np.ndarray:
    """(K, 2) int64 offsets (dy, dx) of a square window wide enough for a disk of ``radius``."""
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    return np.stack([dy.ravel(), dx.ravel()], axis=1).astype(np.int64)


def centre_heatmap(
    yx: np.ndarray, shape: tuple[int, int], sigma: float, truncate: float = 3.0
) -> np.ndarray:
    """Heatmap whose value at a pixel is ``max_i exp(-|p - yx_i|^2 / (2 sigma^2))``.

    yx: (N, 2) float, points in index coordinates of the output (may lie outside it; those within
    ``truncate * sigma`` of the border still contribute). shape: (H, W). sigma: pixels.
    Returns (H, W) float32 in [0, 1]; the value is 1 at a point lying on a pixel centre, and each
    isolated point is a local maximum at its nearest pixel. The maximum (not the sum) keeps nearby
    cells apart as separate peaks.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    h, w = shape
    out = np.zeros((h, w), np.float32)
    pts = np.asarray(yx, np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return out
    reach = truncate * sigma
    keep = (
        (pts[:, 0] > -reach - 1) & (pts[:, 0] < h + reach)
        & (pts[:, 1] > -reach - 1) & (pts[:, 1] < w + reach)
    )
    pts = pts[keep]
    offsets = disk_offsets(reach)
    chunk = max(1, 2_000_000 // len(offsets))
    for start in range(0, len(pts), chunk):
        p = pts[start : start + chunk]
        base = np.rint(p).astype(np.int64)
        rr = base[:, None, 0] + offsets[None, :, 0]
        cc = base[:, None, 1] + offsets[None, :, 1]
        d2 = (rr - p[:, None, 0]) ** 2 + (cc - p[:, None, 1]) ** 2
        val = np.exp(-d2 / (2.0 * sigma * sigma)).astype(np.float32)
        ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w) & (d2 <= reach * reach)
        np.maximum.at(out, (rr[ok], cc[ok]), val[ok])
    return out
