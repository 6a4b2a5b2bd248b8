"""Rendering: what is drawn is exactly the truth, tiles agree with the whole, stains are where said."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.ndimage import binary_erosion, laplace
from scipy.spatial import cKDTree

from maskllp.classes import CellClass
from maskllp.config.synth import StainConfig, TissueConfig
from maskllp.stains import unmix_hd
from maskllp.synth.cells import Subtype
from maskllp.synth.render import (
    defocus_map,
    iter_tiles,
    nucleus_owners,
    render_core,
    render_window,
    stain_maps,
)

from .conftest import make_layout


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiled_rendering_equals_one_piece(seed):
    layout = make_layout(seed=seed, size=288, tps=0.5, stain=StainConfig(
        nonspecific_core_fraction=1.0, defocus_area=(0.5, 0.5), brown_negative_core_fraction=1.0),
        tissue=TissueConfig(crowding=(0.5, 0.5), lymphoid_aggregates=(0.2, 0.2)))
    assert layout.optics.defocus_px > 0 and 0 < defocus_map(layout, 0, 0, 288, 288).mean() < 1
    whole = render_core(layout)
    for tile in (96, 112):
        tiled = np.zeros_like(whole)
        for (top, left), piece in iter_tiles(layout, tile):
            tiled[top : top + piece.shape[0], left : left + piece.shape[1]] = piece
        assert np.array_equal(tiled, whole)
    assert np.array_equal(render_window(layout, 50, 70, 33, 41), whole[50:83, 70:111])


def test_every_truth_cell_is_drawn_and_nothing_else(confounded_layout):
    layout = confounded_layout
    cells = layout.cells
    owners = nucleus_owners(layout)
    drawn, area = np.unique(owners[owners >= 0], return_counts=True)
    assert np.array_equal(drawn, np.arange(len(cells)))  # every cell, and only cells, have nuclei
    expected = np.pi * cells.nucleus_axes[:, 0] * cells.nucleus_axes[:, 1]
    assert (area > 0.6 * expected).all() and (area < 1.6 * expected + 4).all()
    centre = np.rint(cells.yx).astype(int)
    assert np.array_equal(owners[centre[:, 0], centre[:, 1]], np.arange(len(cells)))


def test_nuclei_are_hematoxylin_dark_in_the_rendered_image(confounded_layout):
    layout = confounded_layout
    rgb = render_core(layout)
    h, _ = unmix_hd(rgb)
    owners = nucleus_owners(layout)
    pixels = np.argwhere(np.ones(owners.shape, bool)).astype(float)
    inside = layout.geometry.depth(pixels).reshape(owners.shape) > 5
    background = np.median(h[inside & (owners < 0)])
    per_cell = np.bincount(owners[owners >= 0], weights=h[owners >= 0]) / np.bincount(owners[owners >= 0])
    assert (per_cell > background + 0.05).mean() > 0.97


def test_dab_sits_on_positive_membranes_and_confounders_not_negative_tumour():
    layout = make_layout(seed=11, size=512, tps=0.3, tissue=TissueConfig(architecture_weights=[1, 1, 0]),
                         stain=StainConfig(nonspecific_core_fraction=0.0, weak_positive_fraction=(0.0, 0.0)))
    rgb = render_core(layout)
    _, dab = unmix_hd(rgb)
    cells = layout.cells

    def ring_dab(index):  # mean DAB OD on the outline ring of each cell body
        out = []
        for i in index:
            cy, cx = cells.body_yx[i]
            r = cells.cell_axes[i].mean()
            yy, xx = np.ogrid[: rgb.shape[0], : rgb.shape[1]]
            d = np.hypot(yy - cy, xx - cx)
            out.append(dab[(d > 0.75 * r) & (d < 1.05 * r)].mean())
        return np.array(out)

    pos = np.flatnonzero(cells.cls == CellClass.POSITIVE_TUMOUR)
    neg = np.flatnonzero(cells.cls == CellClass.NEGATIVE_TUMOUR)
    # negative cells with no positive neighbour (a neighbour's membrane would tint the shared border)
    far = [i for i in neg
           if np.hypot(*(cells.yx[pos] - cells.yx[i]).T).min() > 1.8 * cells.cell_axes[i].mean()]
    pos = pos[:15]
    assert len(pos) >= 10 and len(far) >= 5
    assert np.median(ring_dab(pos)) > np.median(ring_dab(far)) + 0.08


def test_nucleus_marker_browns_positive_nuclei():
    layout = make_layout(seed=12, size=320, tps=0.6, marker="nucleus",
                         stain=StainConfig(weak_positive_fraction=(0.0, 0.0), nonspecific_core_fraction=0.0))
    _, dab = unmix_hd(render_core(layout))
    owners = nucleus_owners(layout)
    cells = layout.cells
    mean_dab = np.bincount(owners[owners >= 0], weights=dab[owners >= 0], minlength=len(cells)) / np.maximum(
        np.bincount(owners[owners >= 0], minlength=len(cells)), 1)
    pos = cells.cls == CellClass.POSITIVE_TUMOUR
    neg = (cells.cls == CellClass.NEGATIVE_TUMOUR)
    assert np.median(mean_dab[pos]) > np.median(mean_dab[neg]) + 0.15
    assert (cells.subtype[pos] == Subtype.TUMOUR).all()


def test_glass_outside_the_core_is_bright_and_tissue_is_not():
    layout = make_layout(seed=13, size=256)
    rgb = render_core(layout).astype(float)
    assert rgb[:4, :4].mean() > 200
    inside = layout.geometry.depth(np.array([[128.0, 128.0]]))[0] > 0
    assert inside and rgb[100:156, 100:156].mean() < rgb[:4, :4].mean()


def _ellipse_rho(cells, i, yy, xx):
    """Elliptic distance (1 on the outline, harmonics ignored) of pixels from cell i's nucleus."""
    c, s = np.cos(cells.theta[i]), np.sin(cells.theta[i])
    dy, dx = yy - cells.yx[i, 0], xx - cells.yx[i, 1]
    u, v = dy * c + dx * s, dx * c - dy * s
    return np.hypot(u / cells.nucleus_axes[i, 0], v / cells.nucleus_axes[i, 1])


def test_overlapping_nuclei_are_darker_where_they_overlap():
    layout = make_layout(seed=14, size=256, tps=0.0, tissue=TissueConfig(
        architecture_weights=[0, 1, 0], crowding=(1.0, 1.0), tumour_area=(0.9, 0.9)))
    cells = layout.cells
    h, _, owners = stain_maps(layout, 0, 0, 256, 256)
    yy, xx = np.mgrid[:256, :256].astype(float)
    # pairs of crowded nuclei that overlap; their lens (inside both, away from the outlines) must
    # carry both nuclei's hematoxylin: more than the same nucleus's rim beside the lens
    pairs = cKDTree(cells.yx).query_pairs(cells.nucleus_axes.max() * 1.6, output_type="ndarray")
    gains = []
    for i, j in pairs:
        if not (cells.packing[i] > 0 and cells.packing[j] > 0):
            continue
        ri, rj = _ellipse_rho(cells, i, yy, xx), _ellipse_rho(cells, j, yy, xx)
        lens = (ri < 0.85) & (rj < 0.85)
        alone = (ri > 0.7) & (ri < 0.85) & (rj > 1.3)  # i's rim, outside j
        others = [k for k in np.flatnonzero(np.hypot(*(cells.yx - cells.yx[i]).T) < 40) if k not in (i, j)]
        for k in others:
            alone &= _ellipse_rho(cells, k, yy, xx) > 1.3
        if lens.sum() >= 4 and alone.sum() >= 10:
            gains.append(h[lens].mean() / h[alone].mean())
    assert len(gains) >= 5
    assert np.median(gains) > 1.4  # optical densities add: a second nucleus's worth of hematoxylin
    # every nucleus is still drawn, at its own centre
    centre = np.rint(cells.yx).astype(int)
    assert np.array_equal(owners[centre[:, 0], centre[:, 1]], np.arange(len(cells)))


def test_brown_negative_cells_are_brown_without_a_membrane_ring():
    layout = make_layout(seed=15, size=512, tps=0.3, tissue=TissueConfig(
        architecture_weights=[1, 1, 0], crowding=(0.0, 0.0)), stain=StainConfig(
        nonspecific_core_fraction=0.0, brown_negative_core_fraction=1.0, brown_negative_fraction=(0.5, 0.5),
        brown_negative_dab=(0.25, 0.25), weak_positive_fraction=(0.0, 0.0)))
    _, dab, owners = stain_maps(layout, 0, 0, 512, 512)
    cells = layout.cells
    # each pixel's nearest cell and its distance to the border with the next one (the bisector)
    pixels = np.argwhere(np.ones(dab.shape, bool)).astype(float)
    dist, near = cKDTree(cells.body_yx).query(pixels, k=2)
    near, border = near[:, 0].reshape(dab.shape), ((dist[:, 1] - dist[:, 0]) / 2).reshape(dab.shape)
    on_ring, in_cytoplasm = border < 1.0, (border > 3.0) & (owners < 0)

    def ring_and_inside(index):  # mean DAB (stain OD, before optics) on each cell's border and inside
        out = []
        for i in index:
            mine = near == i
            out.append((dab[mine & on_ring].mean(), dab[mine & in_cytoplasm].mean()))
        return np.array(out)

    pos = np.flatnonzero(cells.cls == CellClass.POSITIVE_TUMOUR)
    brown = np.flatnonzero((cells.cls == CellClass.NEGATIVE_TUMOUR) & cells.stained)
    plain = np.flatnonzero((cells.cls == CellClass.NEGATIVE_TUMOUR) & ~cells.stained)

    def isolated(index, far_from):  # cells with no neighbour whose membrane would tint their border
        return [i for i in index
                if np.hypot(*(cells.yx[far_from] - cells.yx[i]).T).min() > 1.8 * cells.cell_axes[i].mean()]

    b = ring_and_inside(isolated(brown, pos))
    p = ring_and_inside(isolated(pos, brown))
    n = ring_and_inside(plain)
    assert len(b) >= 5 and len(p) >= 5
    assert np.median(b[:, 1]) > np.median(n[:, 1]) + 0.1  # brown cytoplasm
    assert np.median(b[:, 0] / b[:, 1]) < 1.0  # but no ring darker than the cytoplasm
    assert np.median(p[:, 0] / p[:, 1]) > 1.5  # which positive membranes have


def test_defocus_is_a_smooth_tile_independent_field_that_blurs_only_where_it_is_on():
    layout = make_layout(seed=16, size=384, tps=0.4, stain=StainConfig(
        defocus_area=(0.4, 0.4), defocus_px=(3.0, 3.0), blur_px=(0.7, 0.7), noise=(0.0, 0.0)))
    field = defocus_map(layout, 0, 0, 384, 384)
    assert np.array_equal(field[100:180, 40:200], defocus_map(layout, 100, 40, 80, 160))
    assert field.min() == 0 and field.max() == 1
    step = max(np.abs(np.diff(field, axis=0)).max(), np.abs(np.diff(field, axis=1)).max())
    assert step < 0.1  # smooth: no jump between neighbouring pixels
    pixels = np.argwhere(np.ones((384, 384), bool)).astype(float)
    inside = layout.geometry.depth(pixels).reshape(384, 384) > 10
    assert 0.25 < (field[inside] > 0.5).mean() < 0.55  # about the drawn share of the core
    blurred = render_core(layout).astype(float).mean(axis=2)
    in_focus = dataclasses.replace(layout, optics=dataclasses.replace(layout.optics, defocus_px=0.0))
    sharp = render_core(in_focus).astype(float).mean(axis=2)
    focus, off = inside & (field == 0), inside & (field == 1)
    margin = 14  # the blur of a defocused pixel reaches this far
    focus_core = binary_erosion(focus, iterations=margin)
    assert focus_core.sum() > 2000 and off.sum() > 2000
    assert np.array_equal(blurred[focus_core], sharp[focus_core])
    detail = np.abs(laplace(blurred)), np.abs(laplace(sharp))
    assert detail[0][off].mean() < 0.5 * detail[1][off].mean()
