"""Gaussian heatmap targets of cell centres (what the detector U-Net learns to regress)."""

from __future__ import annotations

import numpy as np

from maskllp.detection.disks import disk_pixels


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
    for rr, cc, d2 in disk_pixels(pts[keep], (h, w), reach, reach, closed=True):
        np.maximum.at(out, (rr, cc), np.exp(-d2 / (2.0 * sigma * sigma)).astype(np.float32))
    return out
