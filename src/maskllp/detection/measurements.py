"""Stain measurements of each detected cell: hematoxylin and DAB optical density in rings around it.

A cell's positivity shows in where its DAB sits: in the nucleus for nuclear markers (Ki-67), on the
membrane for membrane markers (PD-L1), while a diffuse cytoplasmic tint or a brown neighbour is not
positivity. So the measurements are a radial profile: for concentric rings around the cell centre
(0-2, 2-4, 4-6, 6-8, 8-10 µm), the mean hematoxylin OD, the mean DAB OD and the 90th percentile of
DAB OD (a partial membrane is bright on part of its ring). Optical densities are log10 units
(:mod:`maskllp.stains`), lengths microns, so the numbers mean the same at any pixel size.
"""

from __future__ import annotations

import numpy as np

RING_EDGES_UM: tuple[float, ...] = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0)
"""Ring boundaries in microns (a tumour nucleus is ~5 µm in radius, its membrane at ~6-9 µm)."""
STATISTICS = ("hematoxylin mean", "DAB mean", "DAB p90")
MEASUREMENT_NAMES: tuple[str, ...] = tuple(
    f"{stat} {a:g}-{b:g} um" for a, b in zip(RING_EDGES_UM[:-1], RING_EDGES_UM[1:], strict=True)
    for stat in STATISTICS
)
"""Names of the columns of :func:`stain_measurements`, ring by ring."""
CONTEXT_UM = RING_EDGES_UM[-1]
"""How far from a cell centre the measurements look."""

_CHUNK = 512


def ring_offsets(px_per_um: float, edges_um: tuple[float, ...] = RING_EDGES_UM) -> list[np.ndarray]:
    """(K_k, 2) int64 pixel offsets (dy, dx) of each ring: a pixel belongs to ring k when its centre's
    distance d from the cell's pixel satisfies edges[k] <= d < edges[k + 1] (in microns). A ring
    too thin to hold a pixel at this resolution takes the pixels nearest to its middle radius."""
    reach = int(np.ceil(edges_um[-1] * px_per_um))
    dy, dx = np.mgrid[-reach: reach + 1, -reach: reach + 1]
    d = np.hypot(dy, dx).ravel() / px_per_um
    pixels = np.stack([dy.ravel(), dx.ravel()], axis=1).astype(np.int64)
    out = []
    for a, b in zip(edges_um[:-1], edges_um[1:], strict=True):
        sel = (d >= a) & (d < b)
        if not sel.any():
            sel = np.abs(d - 0.5 * (a + b)) == np.abs(d - 0.5 * (a + b)).min()
        out.append(pixels[sel])
    return out


def stain_measurements(stains: np.ndarray, yx: np.ndarray, px_per_um: float) -> np.ndarray:
    """The radial stain profile of cells.

    stains: (H, W, 3) float (hematoxylin, eosin, DAB) optical densities of a window; yx: (N, 2)
    float cell centres in the window's index coordinates; px_per_um: the window's pixels per
    micron. Pixels past the window's edge repeat the edge. Returns (N, len(MEASUREMENT_NAMES))
    float32.
    """
    yx = np.asarray(yx, np.float64).reshape(-1, 2)
    h, w = stains.shape[:2]
    out = np.zeros((len(yx), len(MEASUREMENT_NAMES)), np.float32)
    if len(yx) == 0:
        return out
    hema = np.ascontiguousarray(stains[..., 0], np.float32)
    dab = np.ascontiguousarray(stains[..., 2], np.float32)
    centres = np.rint(yx).astype(np.int64)
    rings = ring_offsets(px_per_um)
    for start in range(0, len(yx), _CHUNK):
        c = centres[start: start + _CHUNK]
        for k, offsets in enumerate(rings):
            rr = np.clip(c[:, None, 0] + offsets[None, :, 0], 0, h - 1)
            cc = np.clip(c[:, None, 1] + offsets[None, :, 1], 0, w - 1)
            hv, dv = hema[rr, cc], dab[rr, cc]
            col = k * len(STATISTICS)
            out[start: start + len(c), col] = hv.mean(axis=1)
            out[start: start + len(c), col + 1] = dv.mean(axis=1)
            out[start: start + len(c), col + 2] = np.quantile(dv, 0.9, axis=1)
    return out
