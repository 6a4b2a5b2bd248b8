"""The cell-level model: bag arithmetic and its loss by hand, predictions, the model folder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maskllp.config.proportion import LossConfig
from maskllp.intervals import PAPER_FIVE
from maskllp.proportion.cells import (
    CellNetSpec,
    CellPositivityNet,
    CellProportionModel,
    bag_means,
    load_cell_model,
)
from maskllp.proportion.losses import weighted_focal_proportion_loss


def test_bag_means_by_hand() -> None:
    p = torch.tensor([0.2, 0.4, 0.9])
    r, n = bag_means(p, torch.tensor([0, 0, 1]), 3)
    assert torch.allclose(r, torch.tensor([0.3, 0.9, 0.0])) and n.tolist() == [2.0, 1.0, 0.0]


def test_the_weighted_focal_loss_of_two_bags_by_hand() -> None:
    """Bag A: p = (0.2, 0.4), labelled 25-50 % (r = 0.375); bag B: p = (0.9,), labelled 75-100 %
    (r = 0.875); gamma 2 for both: loss = mean of |r - r_hat|^2 KL((r, 1-r) || (r_hat, 1-r_hat))."""
    r_hat, _ = bag_means(torch.tensor([0.2, 0.4, 0.9], dtype=torch.float64), torch.tensor([0, 0, 1]), 2)
    loss = weighted_focal_proportion_loss(PAPER_FIVE, LossConfig()).double()
    got = float(loss(r_hat, torch.tensor([2, 4])))

    def kl(r: float, q: float) -> float:
        return r * math.log(r / q) + (1 - r) * math.log((1 - r) / (1 - q))

    expected = 0.5 * ((0.375 - 0.3) ** 2 * kl(0.375, 0.3) + (0.875 - 0.9) ** 2 * kl(0.875, 0.9))
    assert got == pytest.approx(expected, rel=1e-9)


def _model() -> CellProportionModel:
    torch.manual_seed(0)
    net = CellPositivityNet(CellNetSpec(3, 2, hidden=8))
    return CellProportionModel(net, "ours-cells", PAPER_FIVE, ["a", "b", "c", "t0", "t1"])


def test_predictions_mean_the_cells_and_an_empty_core_is_undefined() -> None:
    model = _model()
    features = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    p = model.cell_probabilities(features)
    pred = model.predict_features(features)
    assert pred.proportion == pytest.approx(float(p.mean()), rel=1e-6)
    assert pred.s_p + pred.s_n == pytest.approx(7.0, rel=1e-6)
    assert pred.interval == PAPER_FIVE.index_of(pred.proportion)
    empty = model.predict_features(np.zeros((0, 5), np.float32))
    assert empty.proportion is None and empty.interval is None
    model.estimate = "count"
    assert model.predict_features(features).proportion == pytest.approx(float(np.mean(p > 0.5)))


def test_the_model_folder_round_trips(tmp_path) -> None:
    model = _model()
    features = np.random.default_rng(1).normal(size=(5, 5)).astype(np.float32)
    model.net.standardise_on(torch.from_numpy(features))
    loaded = load_cell_model(model.save(tmp_path / "m"))
    assert loaded.feature_names == model.feature_names and loaded.scheme == PAPER_FIVE
    assert np.array_equal(loaded.cell_probabilities(features), model.cell_probabilities(features))
