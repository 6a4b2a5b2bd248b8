"""Rendering: what is drawn is exactly the truth, tiles agree with the whole, stains are where said."""

from __future__ import annotations

import numpy as np
import pytest

from maskllp.classes import CellClass
from maskllp.synth.cells import Subtype
from maskllp.synth.config import StainConfig, TissueConfig
from maskllp.synth.render import iter_tiles, nucleus_owners, render_core, render_window
from maskllp.synth.stains import unmix_hd

from .conftest import make_layout


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiled_rendering_equals_one_piece(seed):
    layout = make_layout(seed=seed, size=288, tps=0.5, stain=StainConfig(nonspecific_core_fraction=1.0))
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
