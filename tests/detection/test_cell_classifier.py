"""The measurement tumour classifier: its inputs by hand, DAB kept out of the tumour decision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskllp.detection.cell_classifier import (
    CONTEXT_NAMES,
    MeasurementClassifier,
    MeasurementClassifierSpec,
    classifier_features,
    context_features,
    feature_names,
)
from maskllp.detection.measurements import MEASUREMENT_NAMES


def test_context_counts_the_other_cells_within_each_radius() -> None:
    # at 1 um/px: cells at x = 0, 4, 13, 31 um on a line; radii 10, 20, 40 um
    yx = np.array([[0.0, 0.0], [0.0, 4.0], [0.0, 13.0], [0.0, 31.0]])
    counts = context_features(yx, mpp=1.0)
    assert counts.tolist() == [[1, 2, 3], [2, 2, 3], [1, 3, 3], [0, 1, 3]]
    assert context_features(yx * 2, mpp=0.5).tolist() == counts.tolist()  # microns, not pixels
    assert context_features(np.zeros((0, 2)), 1.0).shape == (0, len(CONTEXT_NAMES))


def test_the_tumour_decision_sees_no_dab_and_three_classes_see_it() -> None:
    tumour, three = feature_names("tumour"), feature_names("three")
    assert not any(n.startswith("DAB") for n in tumour) and any(n.startswith("DAB") for n in three)
    assert tumour[-len(CONTEXT_NAMES):] == list(CONTEXT_NAMES)
    rng = np.random.default_rng(0)
    m = rng.random((5, len(MEASUREMENT_NAMES))).astype(np.float32)
    yx = rng.random((5, 2)) * 100
    x = classifier_features(m, yx, 0.5, "tumour")
    brown = m.copy()
    brown[:, [i for i, n in enumerate(MEASUREMENT_NAMES) if n.startswith("DAB")]] += 1.0
    assert x.shape == (5, len(tumour)) and np.array_equal(x, classifier_features(brown, yx, 0.5, "tumour"))
    net = MeasurementClassifier(MeasurementClassifierSpec("three"))
    assert net.logits(m, yx, 0.5).shape == (5, 3)
    assert torch.isfinite(net.logits(m, yx, 0.5)).all()


def test_a_patch_classifier_reads_the_hematoxylin_of_each_patch_and_never_its_dab() -> None:
    rng = np.random.default_rng(1)
    n = 6
    m = rng.random((n, len(MEASUREMENT_NAMES))).astype(np.float32)
    yx = rng.random((n, 2)) * 100
    patches = rng.integers(0, 80, (n, 2, 48, 48), dtype=np.uint8)
    torch.manual_seed(0)
    net = MeasurementClassifier(MeasurementClassifierSpec("tumour", patches=True))
    base = net.logits(m, yx, 0.5, patches=patches)
    assert base.shape == (n, 1) and torch.isfinite(base).all()
    browner = patches.copy()
    browner[:, 1] = 255
    assert torch.equal(net.logits(m, yx, 0.5, patches=browner), base)  # DAB changes nothing
    darker = patches.copy()
    darker[:, 0] //= 2
    assert not torch.allclose(net.logits(m, yx, 0.5, patches=darker), base)  # hematoxylin does
    assert net.logits(m[:0], yx[:0], 0.5, patches=patches[:0]).shape == (0, 1)
    with pytest.raises(ValueError, match="patches"):
        net.logits(m, yx, 0.5)
