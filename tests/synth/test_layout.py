"""Core layouts: the cells that exist, their classes and stains."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from maskllp.classes import CellClass
from maskllp.config import load_config
from maskllp.config.synth import StainConfig, SynthConfig, TissueConfig
from maskllp.errors import InputError
from maskllp.synth.cells import Subtype
from maskllp.synth.layout import _polar_radius
from maskllp.synth.truth import core_counts, exact_tps

from .conftest import make_layout


@pytest.mark.parametrize("tps", [0.0, 0.003, 0.2, 0.5, 1.0])
def test_positive_count_is_the_target_share_of_tumour_cells(tps):
    layout = make_layout(seed=1, tps=tps)
    cells = layout.cells
    tumour = cells.subtype == Subtype.TUMOUR
    positive = cells.cls == CellClass.POSITIVE_TUMOUR
    assert tumour.sum() > 20
    assert positive.sum() == round(tps * tumour.sum())
    assert np.all(tumour[positive])  # only tumour cells are ever counted positive
    assert np.all(cells.stained[positive]) and np.all(cells.dab[positive, 0] > 0)
    negative = cells.cls == CellClass.NEGATIVE_TUMOUR
    assert np.all(cells.dab[negative][:, [0, 2]] == 0)  # never a membrane (nor a nucleus) of DAB
    # a negative cell carries DAB only as a brown negative: cytoplasm only
    assert np.array_equal(cells.stained[negative], cells.dab[negative, 1] > 0)


def test_tps_excludes_stained_non_tumour_cells(confounded_layout):
    cells = confounded_layout.cells
    counts = core_counts(cells)
    assert counts["n_stained_non_tumour"] > 10  # DAB-positive macrophages and lymphocytes exist
    stained_immune = (cells.cls == CellClass.NON_TUMOUR) & cells.stained
    assert stained_immune.sum() == counts["n_stained_non_tumour"]
    n_tumour = counts["n_positive_tumour"] + counts["n_negative_tumour"]
    tps = exact_tps(counts["n_positive_tumour"], counts["n_negative_tumour"])
    assert tps == pytest.approx(0.3, abs=0.5 / n_tumour)
    naive = (counts["n_positive_tumour"] + counts["n_stained_non_tumour"]) / len(cells)
    assert abs(naive - 0.3) > 0.02  # counting every brown cell would give another answer


def test_tumour_free_core_has_no_tumour_and_undefined_tps():
    layout = make_layout(seed=2, tps=None)
    counts = core_counts(layout.cells)
    assert counts["n_positive_tumour"] == counts["n_negative_tumour"] == 0
    assert counts["n_non_tumour"] > 0
    assert exact_tps(0, 0) is None
    assert layout.architecture == "none"


def _pairs(cells, reach):
    """Close pairs (i, j), their distance and each nucleus's radius towards the other (px)."""
    pairs = cKDTree(cells.yx).query_pairs(reach, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    d = cells.yx[j] - cells.yx[i]
    direction = np.arctan2(d[:, 1], d[:, 0])
    return i, j, np.hypot(d[:, 0], d[:, 1]), _polar_radius(cells, i, direction), _polar_radius(
        cells, j, direction + np.pi)


@pytest.mark.parametrize("arch", [[1, 1, 0], [0, 0, 1]])
def test_nuclei_overlap_only_where_packed_and_cells_lie_inside_the_core(arch):
    layout = make_layout(seed=4, size=384, tissue=TissueConfig(
        lymphoid_aggregates=(0.3, 0.3), crowding=(0.5, 0.5), architecture_weights=arch))
    cells = layout.cells
    assert len(cells) > 40
    assert (layout.geometry.depth(cells.yx) > 0).all()
    i, j, dist, ri, rj = _pairs(cells, 2 * cells.nucleus_axes.max())
    packed = (cells.packing[i] > 0) & (cells.packing[j] > 0)
    assert (dist[~packed] > ri[~packed] + rj[~packed]).all()  # apart, unless both pack
    overlapping = packed & (dist < ri + rj)
    assert overlapping.sum() > 20  # crowded tumour cells and aggregated lymphocytes do overlap
    share = 1 - dist / (ri + rj)
    assert (share[packed] <= np.minimum(cells.packing[i], cells.packing[j])[packed] + 1e-4).all()
    assert (np.maximum(ri, rj)[packed] < dist[packed]).all()  # no nucleus reaches another's centre


def test_crowding_packs_the_configured_share_of_tumour_nuclei_closer_than_their_diameter():
    def close_share(crowding):  # tumour cells whose nearest tumour neighbour is nearer than a diameter
        close = []
        for seed in range(3):
            cells = make_layout(seed=seed, size=512, tps=0.3, tissue=TissueConfig(
                architecture_weights=[1, 1, 0], crowding=(crowding, crowding))).cells
            t = cells.subtype == Subtype.TUMOUR
            diameter = 2 * np.sqrt(cells.nucleus_axes[t, 0] * cells.nucleus_axes[t, 1])
            dist, nb = cKDTree(cells.yx[t]).query(cells.yx[t], k=2)
            close.append(dist[:, 1] < (diameter + diameter[nb[:, 1]]) / 2)
            assert abs((cells.packing[t] > 0).mean() - crowding) < 0.08
        return np.concatenate(close).mean()

    assert close_share(0.0) < 0.02
    assert 0.28 < close_share(0.4) < 0.45  # most crowded cells; a few at patch rims keep their room


def test_lymphoid_aggregates_have_touching_nuclei():
    def touching(spacing):
        cells = make_layout(seed=5, size=384, tissue=TissueConfig(
            lymphoid_aggregates=(0.4, 0.4), aggregate_spacing=(spacing, spacing))).cells
        lym = cells.subtype == Subtype.LYMPHOCYTE
        diameter = 2 * np.sqrt(cells.nucleus_axes[lym, 0] * cells.nucleus_axes[lym, 1])
        dist, _ = cKDTree(cells.yx[lym]).query(cells.yx[lym], k=2)
        assert lym.sum() > 100
        return (dist[:, 1] < diameter).mean()

    assert touching(1.0) > 0.6
    assert touching(1.5) < 0.05  # the old, loose aggregates


def test_cell_types_differ_by_size_and_shape_not_by_class_colour():
    layouts = [make_layout(seed=s, size=512, tps=0.5, tissue=TissueConfig(architecture_weights=[1, 1, 0]),
                           stain=StainConfig(dab_hematoxylin_masking=(0.0, 0.0)))
               for s in range(4)]
    mpp = layouts[0].mpp
    axes = np.concatenate([lay.cells.nucleus_axes for lay in layouts]) * mpp
    subtype = np.concatenate([lay.cells.subtype for lay in layouts])
    cls = np.concatenate([lay.cells.cls for lay in layouts])
    chromatin = np.concatenate([lay.cells.chromatin for lay in layouts])
    diameter = 2 * np.sqrt(axes[:, 0] * axes[:, 1])
    elong = axes[:, 0] / axes[:, 1]
    by = {s: subtype == s for s in Subtype}
    assert by[Subtype.TUMOUR].sum() > 150
    assert 8 < np.median(diameter[by[Subtype.TUMOUR]]) < 14
    assert 4.5 < np.median(diameter[by[Subtype.LYMPHOCYTE]]) < 7.5
    assert np.median(elong[by[Subtype.FIBROBLAST]]) > 2.5 * np.median(elong[by[Subtype.TUMOUR]])
    # positive and negative tumour cells share one morphology and hematoxylin: only the DAB differs
    pos, neg = cls == CellClass.POSITIVE_TUMOUR, cls == CellClass.NEGATIVE_TUMOUR
    assert abs(np.median(diameter[pos]) - np.median(diameter[neg])) < 0.1 * np.median(diameter[neg])
    assert abs(np.median(chromatin[pos, 0]) - np.median(chromatin[neg, 0])) < 0.05
    # and the hematoxylin of tumour and immune nuclei overlaps from core to core (no colour code)
    per_core_tumour = [np.median(lay.cells.chromatin[lay.cells.subtype == Subtype.TUMOUR, 0])
                       for lay in layouts]
    per_core_mac = [np.median(lay.cells.chromatin[lay.cells.subtype == Subtype.MACROPHAGE, 0])
                    for lay in layouts if (lay.cells.subtype == Subtype.MACROPHAGE).any()]
    assert max(per_core_mac) > min(per_core_tumour)


def test_nucleus_marker_stains_nuclei_not_membranes():
    layout = make_layout(seed=6, tps=0.5, marker="nucleus")
    cells = layout.cells
    pos = cells.cls == CellClass.POSITIVE_TUMOUR
    assert pos.sum() > 5
    assert (cells.dab[pos, 2] > 0).all() and (cells.dab[pos, 0] == 0).all()


def test_weak_and_partial_positives_exist():
    layout = make_layout(seed=7, size=512, tps=0.9)
    cells = layout.cells
    pos = cells.cls == CellClass.POSITIVE_TUMOUR
    assert (cells.dab[pos, 0] < 0.16).any() and (cells.dab[pos, 0] > 0.3).any()
    partial = cells.ring[pos, 2] > -1
    assert 0 < partial.sum() < pos.sum()


def test_same_seed_same_layout_and_seed_matters():
    a, b, c = make_layout(seed=8), make_layout(seed=8), make_layout(seed=9)
    assert np.array_equal(a.cells.yx, b.cells.yx) and np.array_equal(a.cells.dab, b.cells.dab)
    assert len(a.cells) != len(c.cells) or not np.array_equal(a.cells.yx, c.cells.yx)


def test_bad_settings_are_input_errors_naming_the_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[synth]\nsize = 50\n")
    with pytest.raises(InputError, match=r"bad.toml: section synth: size must lie in \[128, 20000\]"):
        load_config(path)
    path.write_text("[synth.cohort]\ntps_bin_weights = [1, 2]\n")
    with pytest.raises(InputError, match="section synth.cohort: tps_bin_weights needs 5"):
        load_config(path)
    path.write_text("[synth.stain]\nnoise = [3, 1]\n")
    with pytest.raises(InputError, match="section synth.stain: noise must be a range"):
        load_config(path)
    with pytest.raises(ValueError, match="marker"):
        SynthConfig(marker="cytoplasm")  # type: ignore[arg-type]


def test_brown_negative_tumour_cells_carry_cytoplasmic_dab_and_stay_negative():
    def draw(core_fraction):
        return make_layout(seed=21, size=512, tps=0.3, tissue=TissueConfig(architecture_weights=[1, 1, 0]),
                           stain=StainConfig(brown_negative_core_fraction=core_fraction,
                                             brown_negative_fraction=(0.3, 0.3))).cells

    plain, brown = draw(0.0), draw(1.0)
    assert np.array_equal(plain.cls, brown.cls)  # same cells, same classes: TPS does not move
    assert core_counts(plain) == core_counts(brown)
    assert np.array_equal(plain.stained, brown.stained & (brown.cls != CellClass.NEGATIVE_TUMOUR))
    neg = brown.cls == CellClass.NEGATIVE_TUMOUR
    is_brown = neg & brown.stained
    assert is_brown.sum() == round(0.3 * neg.sum()) > 10
    assert (brown.dab[is_brown, 1] > 0.02).all()  # cytoplasm
    assert (brown.dab[is_brown][:, [0, 2]] == 0).all()  # no membrane, no nucleus
    assert not (plain.stained & (plain.cls == CellClass.NEGATIVE_TUMOUR)).any()
    nucleus = make_layout(seed=21, size=256, tps=0.3, marker="nucleus", stain=StainConfig(
        brown_negative_core_fraction=1.0)).cells  # Ki-67: negatives stay DAB-free
    assert not (nucleus.stained & (nucleus.cls == CellClass.NEGATIVE_TUMOUR)).any()


def test_pale_nuclei_and_hematoxylin_lost_under_dab_follow_the_settings():
    def draw(pale, masking):
        return make_layout(seed=22, size=512, tps=0.6, stain=StainConfig(
            pale_nucleus_fraction=(pale, pale), dab_hematoxylin_masking=(masking, masking))).cells

    base = draw(0.0, 0.0)
    masked = draw(0.0, 0.5)  # same draws, only the hematoxylin differs
    assert np.array_equal(base.dab, masked.dab)
    expected = 1 - 0.5 * np.minimum(base.dab.max(axis=1) / 0.8, 1)
    assert np.allclose(masked.chromatin[:, 0] / base.chromatin[:, 0], expected, rtol=1e-5)
    strong = base.dab.max(axis=1) >= 0.8
    assert strong.any() and np.allclose(expected[strong], 0.5)
    pale = draw(0.3, 0.0)
    ratio = pale.chromatin[:, 0] / base.chromatin[:, 0]
    assert abs((ratio < 0.99).mean() - 0.3) < 3 * np.sqrt(0.3 * 0.7 / len(ratio))
    assert ratio.min() >= 0.35 - 1e-6 and np.allclose(ratio[ratio >= 0.99], 1)
