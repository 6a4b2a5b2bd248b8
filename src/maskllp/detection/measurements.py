"""Stain measurements of each detected cell: hematoxylin and DAB optical density in rings around it.

A cell's positivity shows in where its DAB sits: in the nucleus for nuclear markers (Ki-67), on the
membrane for membrane markers (PD-L1), while a diffuse cytoplasmic tint or a brown neighbour is not
positivity. So the measurements are a radial profile: for concentric rings around the cell centre
(0-2, 2-4, ..., 12-14 µm: carcinoma cells are 15-25 µm across, so their membranes lie 7-13 µm from
the nucleus centre), the mean hematoxylin OD, the mean DAB OD and the 90th percentile of DAB OD (a
partial membrane is bright on part of its ring). And the *circumference* of the stain: two annuli
(4-8 and 8-12 µm) are cut into 8 sectors and the sectors' mean DAB OD sorted from brightest to
darkest, so a membrane stained all round (every sector bright) differs from the membrane of one
stained neighbour touching a negative cell (one or two bright sectors), whatever the angle. The
same sorted sectors of hematoxylin in the 2-6 µm annulus describe the nucleus's shape: a round
nucleus fills every sector, a spindle one two opposite ones.
Optical densities are log10 units (:mod:`maskllp.stains`), lengths microns, so the numbers mean the
same at any pixel size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from maskllp.detection.patches import CellWindows

RING_EDGES_UM: tuple[float, ...] = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0)
"""Ring boundaries in microns (a tumour nucleus is ~4-6 µm in radius, its membrane at ~7-13 µm)."""
STATISTICS = ("hematoxylin mean", "DAB mean", "DAB p90")
SECTOR_ANNULI_UM: tuple[tuple[float, float], ...] = ((4.0, 8.0), (8.0, 12.0))
"""Annuli cut into sectors to measure how much of a cell's circumference is stained with DAB."""
NUCLEUS_ANNULUS_UM: tuple[float, float] = (2.0, 6.0)
"""The annulus whose hematoxylin sectors describe the nucleus's shape."""
N_SECTORS = 8
MEASUREMENT_NAMES: tuple[str, ...] = tuple(
    f"{stat} {a:g}-{b:g} um" for a, b in zip(RING_EDGES_UM[:-1], RING_EDGES_UM[1:], strict=True)
    for stat in STATISTICS
) + tuple(
    f"DAB sector {k + 1}/{N_SECTORS} {a:g}-{b:g} um" for a, b in SECTOR_ANNULI_UM for k in range(N_SECTORS)
) + tuple(f"hematoxylin sector {k + 1}/{N_SECTORS} {NUCLEUS_ANNULUS_UM[0]:g}-{NUCLEUS_ANNULUS_UM[1]:g} um"
          for k in range(N_SECTORS))
"""Names of the columns of :func:`stain_measurements`: ring by ring, then each DAB annulus's sectors
from the brightest (``1/8``) to the darkest (``8/8``), then the hematoxylin sectors."""
STAIN_OF_COLUMN: tuple[int, ...] = tuple(0 if name.startswith("hematoxylin") else 1
                                         for name in MEASUREMENT_NAMES)
"""The stain each column of :func:`stain_measurements` measures: 0 hematoxylin, 1 DAB. Every column is
a mean, a quantile or a sorted sector mean of that one stain's optical density, so a stain scaled by
a > 0 and shifted by b (the HED jitter of :func:`maskllp.detection.augment.stain_jitter`) changes
each of its columns to a * x + b."""
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


def sector_offsets(px_per_um: float, inner_um: float, outer_um: float, n_sectors: int = N_SECTORS
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) int64 pixel offsets of the annulus inner <= d < outer (microns) and (K,) int64 sector of
    each (angle in [0, 2 pi) cut into ``n_sectors`` equal parts)."""
    reach = int(np.ceil(outer_um * px_per_um))
    dy, dx = np.mgrid[-reach: reach + 1, -reach: reach + 1]
    dy, dx = dy.ravel(), dx.ravel()
    d = np.hypot(dy, dx) / px_per_um
    sel = (d >= inner_um) & (d < outer_um)
    angle = np.mod(np.arctan2(dy[sel], dx[sel]), 2 * np.pi)
    sector = np.minimum((angle / (2 * np.pi) * n_sectors).astype(np.int64), n_sectors - 1)
    return np.stack([dy[sel], dx[sel]], axis=1).astype(np.int64), sector


def row_quantile(values: np.ndarray, q: float) -> np.ndarray:
    """``np.quantile(values, q, axis=1)`` (its default linear method), bit for bit, through a sort of
    each row: numpy sorts float rows with SIMD, several times faster than the partition that
    ``np.quantile`` runs. values: (n, k) float with k >= 1 and no NaN; returns (n,) of its dtype."""
    k = values.shape[1]
    position = (k - 1) * q
    lo = int(np.floor(position))
    hi, t = min(lo + 1, k - 1), float(position - lo)
    ordered = np.sort(values, axis=1)
    below, above = ordered[:, lo], ordered[:, hi]
    step = above - below
    return above - step * (1 - t) if t >= 0.5 else below + step * t  # numpy's _lerp


def _columns(offsets: np.ndarray, reach: int) -> np.ndarray:
    """Flat indices in a (2 reach + 1)^2 square of pixel offsets (K, 2) from its centre."""
    return (offsets[:, 0] + reach) * (2 * reach + 1) + offsets[:, 1] + reach


@dataclass(frozen=True)
class _MeasurementPlan:
    """What :func:`stain_measurements` computes at one pixel size, the same for every window."""

    reach: int
    """Half the side of the square around a cell that holds every ring and annulus."""
    rings: tuple[np.ndarray, ...]
    """Flat indices in that square of each ring's pixels."""
    columns: tuple[np.ndarray, np.ndarray]
    """Columns of the output that are means of hematoxylin, of DAB (rings and sectors)."""
    weights: tuple[np.ndarray, np.ndarray]
    """(square pixels, len(columns)) float32: a cell's square times it gives those means."""
    first_sector: int


@functools.lru_cache(maxsize=8)
def _measurement_plan(px_per_um: float) -> _MeasurementPlan:
    reach = int(np.ceil(CONTEXT_UM * px_per_um))
    n_pixels = (2 * reach + 1) ** 2
    rings = tuple(_columns(offsets, reach) for offsets in ring_offsets(px_per_um))
    n_stats = len(STATISTICS)
    # Every mean is a weighted sum of a cell's square: one matrix per stain gives them all at once,
    # in the columns of the output they belong to (ring means, then the sectors of the annuli).
    weights = [np.zeros((n_pixels, len(MEASUREMENT_NAMES)), np.float32) for _ in range(2)]
    for k, columns in enumerate(rings):
        for stain in (0, 1):
            weights[stain][columns, k * n_stats + stain] = 1.0 / len(columns)
    first_sector = len(rings) * n_stats
    for k, (stain, (a, b)) in enumerate([(1, ab) for ab in SECTOR_ANNULI_UM] + [(0, NUCLEUS_ANNULUS_UM)]):
        offsets, sector = sector_offsets(px_per_um, a, b)
        counts = np.maximum(np.bincount(sector, minlength=N_SECTORS), 1)
        weights[stain][_columns(offsets, reach), first_sector + k * N_SECTORS + sector] = 1.0 / counts[sector]
    used = tuple(np.flatnonzero(wt.any(axis=0)) for wt in weights)
    kept = tuple(np.ascontiguousarray(wt[:, cols]) for wt, cols in zip(weights, used, strict=True))
    for array in (*rings, *used, *kept):
        array.setflags(write=False)  # shared by every call at this pixel size
    return _MeasurementPlan(reach, rings, (used[0], used[1]), (kept[0], kept[1]), first_sector)


def stain_measurements(stains: np.ndarray, yx: np.ndarray, px_per_um: float) -> np.ndarray:
    """The radial stain profile of cells.

    stains: (H, W, 3) float (hematoxylin, eosin, DAB) optical densities of a window; yx: (N, 2)
    float cell centres in the window's index coordinates; px_per_um: the window's pixels per
    micron. Pixels past the window's edge repeat the edge. Returns (N, len(MEASUREMENT_NAMES))
    float32.
    """
    yx = np.asarray(yx, np.float64).reshape(-1, 2)
    out = np.zeros((len(yx), len(MEASUREMENT_NAMES)), np.float32)
    if len(yx) == 0:
        return out
    centres = np.rint(yx).astype(np.int64)
    plan = _measurement_plan(float(px_per_um))
    side = 2 * plan.reach + 1
    squares = [CellWindows(np.ascontiguousarray(stains[..., channel], np.float32), side, plan.reach)
               for channel in (0, 2)]
    n_stats, first_sector = len(STATISTICS), plan.first_sector

    for start in range(0, len(yx), _CHUNK):
        c = centres[start: start + _CHUNK]
        rows = slice(start, start + len(c))
        hema, dab = (square.at(c).reshape(len(c), -1) for square in squares)
        out[rows, plan.columns[0]] = hema @ plan.weights[0]
        out[rows, plan.columns[1]] = dab @ plan.weights[1]
        for k, columns in enumerate(plan.rings):
            out[rows, k * n_stats + 2] = row_quantile(dab[:, columns], 0.9)
        for k in range(len(SECTOR_ANNULI_UM) + 1):
            col = first_sector + k * N_SECTORS
            out[rows, col: col + N_SECTORS] = -np.sort(-out[rows, col: col + N_SECTORS], axis=1)
    return out


# ======================================================================== the nucleus itself
NUCLEUS_NAMES: tuple[str, ...] = ("nucleus area um2", "nucleus eccentricity", "nucleus hematoxylin mean",
                                  "nucleus hematoxylin sd", "nucleus contrast")
"""Names of the columns of :func:`nucleus_measurements`."""
NUCLEUS_REACH_UM = 8.0
"""How far from the cell centre the nucleus outline is looked for (tumour nuclei are up to ~13 um
across, lymphocytes 5-9 um)."""
N_RAYS = 24
_STEP_UM = 0.25


def nucleus_measurements(hematoxylin: np.ndarray, yx: np.ndarray, px_per_um: float) -> np.ndarray:
    """Size, shape and chromatin of each cell's nucleus, from the hematoxylin OD around it.

    hematoxylin: (H, W) float hematoxylin optical density of a window; yx: (N, 2) float cell centres
    in its index coordinates; px_per_um: its pixels per micron. For each cell, the nucleus is the
    region around the centre brighter than halfway between the centre's OD (mean within 1.5 um) and
    the background's (10th percentile within ``NUCLEUS_REACH_UM``), traced along 24 rays from the
    centre (each ray stops at its first pixel below the halfway level; a neighbour touching at the
    same darkness is where rays run to the reach). Returns (N, 5) float32: area (um^2, of the ray
    polygon), eccentricity (0 for a circle, towards 1 for a spindle; from the polygon's second
    moments), mean and standard deviation of hematoxylin OD inside (chromatin darkness and texture),
    and the contrast (centre minus background OD). Pixels past the window's edge repeat the edge.
    """
    yx = np.asarray(yx, np.float64).reshape(-1, 2)
    out = np.zeros((len(yx), len(NUCLEUS_NAMES)), np.float32)
    if len(yx) == 0:
        return out
    hema = np.ascontiguousarray(hematoxylin, np.float32)
    h, w = hema.shape
    reach = int(np.ceil(NUCLEUS_REACH_UM * px_per_um))
    dy, dx = np.mgrid[-reach: reach + 1, -reach: reach + 1]
    dist_um = np.hypot(dy, dx).ravel() / px_per_um
    inside = dist_um <= NUCLEUS_REACH_UM
    core = dist_um <= 1.5
    angles = np.arange(N_RAYS) * (2 * np.pi / N_RAYS)
    steps = np.arange(1, int(NUCLEUS_REACH_UM / _STEP_UM) + 1) * _STEP_UM  # microns along a ray
    ray_dy = np.sin(angles)[:, None] * steps[None, :] * px_per_um
    ray_dx = np.cos(angles)[:, None] * steps[None, :] * px_per_um
    ray_width = 2 * np.pi / N_RAYS
    pixel_ray = np.rint((np.arctan2(dy, dx).ravel() % (2 * np.pi)) / ray_width).astype(int) % N_RAYS
    windows = CellWindows(hema, 2 * reach + 1, reach)
    centres = np.rint(yx).astype(np.int64)
    for start in range(0, len(yx), _CHUNK):
        c = centres[start: start + _CHUNK]
        win = windows.at(c).reshape(len(c), -1)  # (n, S*S), row by row as ``dy``, ``dx``
        centre_od = win[:, core].mean(axis=1)
        background = np.quantile(win[:, inside], 0.1, axis=1)
        level = background + 0.5 * (centre_od - background)
        ry = np.clip(np.rint(c[:, None, None, 0] + ray_dy[None]).astype(np.int64), 0, h - 1)
        rx = np.clip(np.rint(c[:, None, None, 1] + ray_dx[None]).astype(np.int64), 0, w - 1)
        above = hema[ry, rx] > level[:, None, None]  # (n, rays, steps)
        first_below = np.where(above.all(axis=2), len(steps), np.argmin(above, axis=2))
        # the outline lies between the last step above the level and the first below it
        radius = np.where(first_below > 0, steps[np.maximum(first_below - 1, 0)], 0.0) + 0.5 * _STEP_UM
        area = 0.5 * np.sin(2 * np.pi / N_RAYS) * (radius * np.roll(radius, -1, axis=1)).sum(axis=1)
        px, py = radius * np.cos(angles), radius * np.sin(angles)
        cxx = (px ** 2).mean(axis=1) - px.mean(axis=1) ** 2
        cyy = (py ** 2).mean(axis=1) - py.mean(axis=1) ** 2
        cxy = (px * py).mean(axis=1) - px.mean(axis=1) * py.mean(axis=1)
        spread = np.sqrt(np.maximum(((cxx - cyy) / 2) ** 2 + cxy ** 2, 0))
        major, minor = (cxx + cyy) / 2 + spread, np.maximum((cxx + cyy) / 2 - spread, 0)
        ecc = np.sqrt(np.clip(1 - minor / np.maximum(major, 1e-12), 0, 1))
        member = dist_um[None, :] <= radius[:, pixel_ray] - 1.0 / px_per_um  # inside, off the edge
        count = np.maximum(member.sum(axis=1), 1)
        mean = (win * member).sum(axis=1) / count
        sd = np.sqrt(np.maximum((win ** 2 * member).sum(axis=1) / count - mean ** 2, 0))
        rows = slice(start, start + len(c))
        out[rows] = np.stack([area, ecc, mean, sd, centre_od - background], axis=1)
    return out
