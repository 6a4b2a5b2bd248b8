"""The tumour mask M: pixels closer than alpha to a tumour cell (section 2 of the paper)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from maskllp.detection.disks import disk_pixels


def mask_shape(shape: tuple[int, int], downsample: float) -> tuple[int, int]:
    """(h, w) of a mask with one pixel per ``downsample`` level-0 pixels: ceil(H / d), ceil(W / d)."""
    if not downsample > 0:
        raise ValueError(f"mask downsample must be positive, got {downsample}")
    return math.ceil(shape[0] / downsample), math.ceil(shape[1] / downsample)


def disk_mask(yx: np.ndarray, shape: tuple[int, int], radius: float, downsample: float = 1.0) -> np.ndarray:
    """Union of open disks around points, rasterised at a chosen resolution.

    yx: (N, 2) float, level-0 index coordinates. shape: level-0 (H, W). radius: level-0 pixels.
    Mask pixel (i, j) covers level-0 pixels [i d, (i + 1) d) x [j d, (j + 1) d); it is True when its
    centre, ((i + 0.5) d - 0.5, (j + 0.5) d - 0.5) in level-0 coordinates, lies closer than
    ``radius`` to a point, and also when a point falls inside it (so no point is lost when the disk is
    smaller than a mask pixel). Returns (ceil(H / d), ceil(W / d)) bool; memory is that array plus
    a bounded work buffer, whatever the number of points.
    """
    h, w = mask_shape(shape, downsample)
    out = np.zeros((h, w), bool)
    pts = np.asarray(yx, np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return out
    own = np.floor((pts + 0.5) / downsample).astype(np.int64)
    inside = (own[:, 0] >= 0) & (own[:, 0] < h) & (own[:, 1] >= 0) & (own[:, 1] < w)
    out[own[inside, 0], own[inside, 1]] = True
    if radius <= 0:
        return out
    centre = (pts + 0.5) / downsample - 0.5  # points in mask-pixel coordinates
    r = radius / downsample
    for rr, cc, _ in disk_pixels(centre, (h, w), r, r + 1, closed=False):
        out[rr, cc] = True
    return out


def tumour_mask(yx: np.ndarray, tumour: np.ndarray, shape: tuple[int, int], alpha_px: float,
                downsample: float = 1.0) -> np.ndarray:
    """M at a chosen resolution: :func:`disk_mask` of the tumour cells.

    yx: (N, 2) float64 level-0 index coordinates; tumour: (N,) bool; shape: level-0 (H, W);
    alpha_px: the radius alpha in level-0 pixels. Returns (ceil(H / d), ceil(W / d)) bool.
    """
    return disk_mask(np.asarray(yx)[np.asarray(tumour, bool)], shape, alpha_px, downsample)


def disk_outline(yx: np.ndarray, shape: tuple[int, int], radius: float,
                 tolerance: float | None = None) -> Any:
    """The union of the disks of ``radius`` (level-0 pixels) around points ``yx`` ((N, 2) level-0
    index coordinates) as a shapely (Multi)Polygon in QuPath coordinates (x, y; a pixel's centre at
    +0.5), clipped to the (H, W) image and simplified to within ``tolerance`` pixels (default 2 % of
    the radius): the tumour mask M as polygons a pathologist can see and edit. Empty polygon when
    there is no point."""
    import shapely
    from shapely.geometry import Polygon, box

    pts = np.asarray(yx, np.float64).reshape(-1, 2)
    if len(pts) == 0 or radius <= 0:
        return Polygon()
    disks = shapely.buffer(shapely.points(pts[:, 1] + 0.5, pts[:, 0] + 0.5), radius, quad_segs=8)
    merged = shapely.union_all(disks)
    clipped = merged.intersection(box(0.0, 0.0, float(shape[1]), float(shape[0])))
    tolerance = 0.02 * radius if tolerance is None else tolerance
    return shapely.simplify(clipped, tolerance, preserve_topology=True)
