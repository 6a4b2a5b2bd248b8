"""What a pathologist would annotate on a synthetic core: a few region polygons, cell points.

Regions are drawn the way the paper's were: a handful of freehand outlines, tumour and non-tumour,
covering a small share of the core (5.71 % on average there). A tumour region follows the outline of
a patch of tumour cells (smoothed, drawn slightly inside it), so infiltrating immune cells can lie
inside it as they do in real annotations; a non-tumour region is a patch of stroma kept clear of
tumour. Point annotations click cells with their class, either every cell of the core or the cells
inside its regions.

Geometry is in QuPath coordinates (see CONTRACTS.md); cell positions are converted with
``x = col + 0.5, y = row + 0.5``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import shapely
from scipy.spatial import cKDTree
from shapely.geometry import Point, Polygon

from maskllp.classes import RegionClass
from maskllp.io.annotations import PointAnnotations, Region, region_class_at
from maskllp.synth.cells import Subtype
from maskllp.synth.layout import CoreLayout

MAX_ATTEMPTS = 24


def core_outline(layout: CoreLayout, n: int = 256) -> Polygon:
    """The core's outline as a polygon (QuPath coordinates)."""
    geo = layout.geometry
    phi = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(phi), np.sin(phi)
    r = geo.depth_at(c * geo.radius, s * geo.radius) + geo.radius  # outline radius along phi
    return Polygon(np.stack([geo.centre[1] + 0.5 + r * s, geo.centre[0] + 0.5 + r * c], axis=1))


def _xy(yx: np.ndarray) -> np.ndarray:
    return yx[:, ::-1] + 0.5


def _patch(centres: np.ndarray, radius: float) -> shapely.Geometry:
    """Union of discs round cell centres (QuPath coordinates), closed so small gaps fill."""
    discs = shapely.buffer(shapely.points(centres), radius, quad_segs=4)
    return shapely.union_all(discs).buffer(radius * 0.5, quad_segs=4).buffer(-radius * 0.5, quad_segs=4)


def _smooth(geom: shapely.Geometry, inset: float, tolerance: float) -> shapely.Geometry:
    """A hand-drawn-looking version: inset a little, vertices thinned, largest piece kept."""
    geom = geom.buffer(-inset).simplify(tolerance)
    if geom.is_empty:
        return geom
    parts = list(getattr(geom, "geoms", [geom]))
    return max(parts, key=lambda g: g.area)


def draw_regions(rng: np.random.Generator, layout: CoreLayout, area_fraction: float) -> list[Region]:
    """Tumour and non-tumour region polygons covering about ``area_fraction`` of the image.

    Pieces alternate tumour / non-tumour (only non-tumour in a core without tumour), each a disc of
    the right size intersected with tumour (or stroma), until the area is reached.
    """
    cells = layout.cells
    um = 1.0 / layout.mpp
    target = area_fraction * layout.size**2
    tumour = cells.subtype == Subtype.TUMOUR
    t_xy, o_xy = _xy(cells.yx[tumour]), _xy(cells.yx[~tumour])
    cell_r = float(np.median(cells.cell_axes[tumour].mean(axis=1))) if tumour.any() else 8 * um
    tissue = core_outline(layout).buffer(-5 * um)
    kinds = [RegionClass.TUMOUR, RegionClass.NON_TUMOUR] if len(t_xy) else [RegionClass.NON_TUMOUR]
    n_pieces = int(rng.integers(2, 5))
    piece_area = target / n_pieces
    t_tree = cKDTree(t_xy) if len(t_xy) else None
    regions: list[Region] = []
    taken = Polygon()
    total = 0.0
    for attempt in range(MAX_ATTEMPTS):
        if total >= 0.95 * target:
            break
        kind = kinds[attempt % len(kinds)]
        widen = 1.6 if kind == RegionClass.TUMOUR else 1.2  # a tumour piece loses area to stroma
        radius = np.sqrt(min(piece_area, target - total) / np.pi) * widen
        if kind == RegionClass.TUMOUR:
            seed = t_xy[rng.integers(len(t_xy))]
            near = t_xy[np.hypot(*(t_xy - seed).T) < radius + 2 * cell_r]
            area = _patch(near, cell_r).intersection(Point(seed).buffer(radius))
        else:
            if len(o_xy) == 0:
                break
            seed = o_xy[rng.integers(len(o_xy))]
            if t_tree is not None and t_tree.query(seed)[0] < radius * 0.5:
                continue
            area = Point(seed).buffer(radius)
            if t_tree is not None:
                near = t_xy[t_tree.query_ball_point(seed, radius + 3 * cell_r)]
                if len(near):
                    area = area.difference(_patch(near, cell_r).buffer(2 * um))
        geom = _smooth(area.intersection(tissue).difference(taken.buffer(2 * um)), 1.5 * um, 1.0 * um)
        if geom.is_empty or geom.area < 0.15 * piece_area:
            continue
        name = f"{'Tumour' if kind == RegionClass.TUMOUR else 'Stroma'} region {len(regions) + 1}"
        regions.append(Region(geom, kind, name))
        taken = taken.union(geom)
        total += geom.area
    return regions


def point_annotations(layout: CoreLayout, regions: list[Region],
                      scope: Literal["core", "regions"]) -> PointAnnotations:
    """Cell points with their classes: every cell, or only cells inside ``regions``."""
    cells = layout.cells
    keep = np.ones(len(cells), bool)
    if scope == "regions":
        keep = region_class_at(regions, cells.yx) > 0
    return PointAnnotations(cells.yx[keep], cells.cls[keep])

