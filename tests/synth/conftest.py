"""Small synthetic cores shared by the synth tests (256-384 px, a fraction of a second each)."""

from __future__ import annotations

import numpy as np
import pytest

from maskllp.config.synth import StainConfig, SynthConfig, TissueConfig
from maskllp.synth.layout import CoreLayout, build_layout, draw_patient_stain


def make_layout(seed: int = 0, size: int = 320, tps: float | None = 0.4, **changes) -> CoreLayout:
    """One core drawn straight from the layout builder (no cohort around it)."""
    cfg = SynthConfig(size=size, **changes)
    rng = np.random.default_rng(seed)
    return build_layout(rng, 1000 + seed, cfg, draw_patient_stain(rng, cfg), tps)


@pytest.fixture(scope="module")
def confounded_layout() -> CoreLayout:
    """A PD-L1 core with many immune cells, all of them DAB-positive, and TPS 0.3."""
    return make_layout(
        seed=3, size=384, tps=0.3,
        tissue=TissueConfig(immune_infiltration=(0.1, 0.1), lymphoid_aggregates=(0.2, 0.2),
                            stroma_cellularity=(1.0, 1.0)),
        stain=StainConfig(positive_macrophage_fraction=(1.0, 1.0), positive_lymphocyte_fraction=(1.0, 1.0)),
    )
