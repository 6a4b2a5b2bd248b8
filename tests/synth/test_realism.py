"""OD-space colour statistics used to compare synthetic cores with real IHC samples."""

from __future__ import annotations

import numpy as np

from maskllp.stains import unmix_hd
from maskllp.synth.realism import stain_statistics, tissue_mask
from maskllp.synth.render import render_core

from .conftest import make_layout


def test_statistics_of_the_real_sample(ihc_rgb):
    stats = stain_statistics(ihc_rgb)
    mask = tissue_mask(ihc_rgb)
    h, d = unmix_hd(ihc_rgb)
    assert stats["tissue_fraction"] == mask.mean()
    assert np.isclose(stats["dab"]["mean"], d[mask].mean())
    assert np.isclose(stats["hematoxylin"]["p95"], np.percentile(h[mask], 95))
    assert stats["dab"]["mean"] > stats["hematoxylin"]["mean"]  # a strongly DAB-positive sample
    assert 0.5 < stats["brown_fraction"] < 1


def test_glass_is_not_tissue():
    white = np.full((8, 8, 3), 238, np.uint8)
    assert not tissue_mask(white).any()
    assert np.isnan(stain_statistics(white)["dab"]["mean"])


def test_more_positive_cells_more_brown():
    low = stain_statistics(render_core(make_layout(seed=33, size=320, tps=0.0)))
    high = stain_statistics(render_core(make_layout(seed=33, size=320, tps=1.0)))
    assert high["brown_fraction"] > low["brown_fraction"] + 0.05
    assert high["dab"]["p95"] > low["dab"]["p95"]
