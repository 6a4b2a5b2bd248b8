"""The cell-level model: bag arithmetic and its loss by hand, predictions, the model folder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maskllp.config.proportion import LossConfig
from maskllp.errors import InputError
from maskllp.intervals import PAPER_FIVE
from maskllp.proportion.cells import (
    CellEnsembleNet,
    CellNetSpec,
    CellPositivityNet,
    CellProportionModel,
    load_cell_model,
)
from maskllp.proportion.losses import (
    BagMeanLoss,
    CountIntervalLikelihood,
    bag_means,
    proportion_loss,
    weighted_focal_proportion_loss,
)
from maskllp.proportion.uncertainty import interval_probability


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


def _logits(p: list[float]) -> torch.Tensor:
    return torch.logit(torch.tensor(p, dtype=torch.float64))


def test_the_count_likelihood_of_two_bags_by_hand() -> None:
    """Bag A: p = (0.5, 0.5) labelled 50-75 %: K / N in {0, 0.5, 1} with P 1/4, 1/2, 1/4, and only 0.5
    lies in [0.5, 0.75): P = 1/2. Bag B: p = (0.9,) labelled 75-100 %: K = 1 (TPS 1.0, the last
    interval is closed), P = 0.9. Loss = mean of -log P."""
    loss = CountIntervalLikelihood(PAPER_FIVE.boundaries.tolist())
    got = float(loss(_logits([0.5, 0.5, 0.9]), torch.tensor([0, 0, 1]), torch.tensor([3, 4])))
    assert got == pytest.approx(0.5 * (math.log(2) - math.log(0.9)), rel=1e-9)


def test_the_count_likelihood_agrees_with_the_range_arithmetic_and_its_normal_approximation() -> None:
    """The training loss and :func:`interval_probability` (numpy, used for the TPS range) compute the
    same Poisson-binomial; beyond ``exact_up_to`` cells the normal approximation stays close."""
    rng = np.random.default_rng(0)
    p = rng.beta(0.5, 2.0, 300)
    bag = torch.zeros(300, dtype=torch.int64)
    for k in range(len(PAPER_FIVE)):
        exact = CountIntervalLikelihood(PAPER_FIVE.boundaries.tolist())
        normal = CountIntervalLikelihood(PAPER_FIVE.boundaries.tolist(), exact_up_to=100)
        want = -math.log(interval_probability(p, k, PAPER_FIVE))
        iv = torch.tensor([k])
        assert float(exact(_logits(list(p)), bag, iv)) == pytest.approx(want, rel=1e-7)
        if want < 5:  # the approximation is for the bulk, not for far tails
            assert float(normal(_logits(list(p)), bag, iv)) == pytest.approx(want, abs=0.05)


def test_the_count_likelihood_leaves_out_labels_no_count_can_reach_and_unlabelled_bags() -> None:
    """Two cells cannot make 25-50 % (0, 50, 100 %); an unlabelled bag (-1) says nothing either: the
    loss is the remaining bag's alone, and 0 with a gradient when none remains."""
    loss = CountIntervalLikelihood(PAPER_FIVE.boundaries.tolist())
    z = _logits([0.5, 0.5, 0.2, 0.7]).requires_grad_()
    bag = torch.tensor([0, 0, 1, 2])
    got = loss(z, bag, torch.tensor([2, 0, -1]))
    assert float(got.detach()) == pytest.approx(-math.log(0.8), rel=1e-9)
    none = loss(z, bag, torch.tensor([2, -1, -1]))
    none.backward()
    assert float(none.detach()) == 0.0 and z.grad is not None


def test_the_count_likelihood_gradient_makes_calls_confident_inside_the_interval() -> None:
    """A bag of 10 cells at p = 0.5 labelled 0-1 % (count 0): every p must go down; labelled 75-100 %:
    up. The gradient is finite for extreme logits too."""
    loss = CountIntervalLikelihood(PAPER_FIVE.boundaries.tolist())
    for interval, sign in ((0, 1.0), (4, -1.0)):
        z = torch.zeros(10, dtype=torch.float64, requires_grad=True)
        loss(z, torch.zeros(10, dtype=torch.int64), torch.tensor([interval])).backward()
        assert bool((sign * z.grad > 0).all())
    z = torch.tensor([40.0, -40.0, 60.0], dtype=torch.float64, requires_grad=True)
    loss(z, torch.zeros(3, dtype=torch.int64), torch.tensor([0])).backward()
    assert bool(torch.isfinite(z.grad).all())


def test_a_proportion_loss_over_bags_is_that_loss_of_the_bag_means() -> None:
    z = _logits([0.2, 0.4, 0.9])
    bag, interval = torch.tensor([0, 0, 1]), torch.tensor([2, 4])
    inner = proportion_loss(PAPER_FIVE, LossConfig()).double()
    r_hat, _ = bag_means(torch.sigmoid(z), bag, 2)
    assert float(BagMeanLoss(inner)(z, bag, interval)) == pytest.approx(float(inner(r_hat, interval)))



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


def test_the_range_is_the_tempered_count_range_widened_by_the_margin_and_round_trips(tmp_path) -> None:
    """The reported range: the Poisson-binomial range of sigmoid(logit / T), widened by the margin;
    the folder keeps T and the margin; a folder without a margin leaves the range unwidened, and a
    margin outside [0, 1] is a broken folder."""
    import json

    from maskllp.proportion.uncertainty import tps_interval

    model = _model()
    features = np.random.default_rng(2).normal(size=(40, 5)).astype(np.float32)
    logits = model.cell_logits(features)
    model.range_temperature = 2.0
    base = tps_interval(torch.sigmoid(torch.from_numpy(logits) / 2.0).numpy(), 0.9)
    assert model.predict_features(features).tps_range == pytest.approx(base)  # no margin yet
    model.range_margin = 0.04
    low, high = model.predict_features(features).tps_range
    assert (low, high) == (pytest.approx(max(0.0, base[0] - 0.04)), pytest.approx(min(1.0, base[1] + 0.04)))
    loaded = load_cell_model(model.save(tmp_path / "m"))
    assert loaded.range_temperature == 2.0 and loaded.range_margin == 0.04
    assert loaded.predict_features(features).tps_range == pytest.approx((low, high))
    assert loaded.predict_features(np.zeros((0, 5), np.float32)).tps_range is None
    thresholds = tmp_path / "m" / "thresholds.json"
    data = json.loads(thresholds.read_text())
    data["range_margin"] = 1.5
    thresholds.write_text(json.dumps(data))
    with pytest.raises(InputError, match="range_margin"):
        load_cell_model(tmp_path / "m")


def test_the_model_folder_round_trips(tmp_path) -> None:
    model = _model()
    features = np.random.default_rng(1).normal(size=(5, 5)).astype(np.float32)
    model.net.standardise_on(torch.from_numpy(features))
    loaded = load_cell_model(model.save(tmp_path / "m"))
    assert loaded.feature_names == model.feature_names and loaded.scheme == PAPER_FIVE
    assert np.array_equal(loaded.cell_probabilities(features), model.cell_probabilities(features))


def test_an_ensemble_means_its_members_logits_and_round_trips(tmp_path) -> None:
    torch.manual_seed(0)
    spec = CellNetSpec(3, 2, hidden=8)
    members = [CellPositivityNet(spec).eval() for _ in range(3)]
    names = ["a", "b", "c", "t0", "t1"]
    model = CellProportionModel(CellEnsembleNet(members), "ours-cells", PAPER_FIVE, names)
    features = np.random.default_rng(3).normal(size=(6, 5)).astype(np.float32)
    by_hand = np.mean([m(torch.from_numpy(features)).detach().numpy() for m in members], axis=0)
    assert model.members == 3 and _model().members == 1
    assert np.allclose(model.cell_logits(features), by_hand, atol=1e-6)
    loaded = load_cell_model(model.save(tmp_path / "m"))
    assert loaded.members == 3 and np.array_equal(loaded.cell_logits(features), model.cell_logits(features))
    with pytest.raises(ValueError, match="one spec"):
        CellEnsembleNet([CellPositivityNet(spec), CellPositivityNet(CellNetSpec(3, 0, hidden=8))])


def test_a_folder_saved_before_ensembles_loads_as_one_network(tmp_path) -> None:
    import json

    model = _model()
    folder = model.save(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config.pop("members") == 1
    (folder / "config.json").write_text(json.dumps(config))
    loaded = load_cell_model(folder)
    features = np.random.default_rng(4).normal(size=(4, 5)).astype(np.float32)
    assert loaded.members == 1 and np.array_equal(loaded.cell_logits(features), model.cell_logits(features))
    for bad in (0, 10**9, "3"):
        config["members"] = bad
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(InputError, match="members"):
            load_cell_model(folder)


def _patch_model() -> CellProportionModel:
    torch.manual_seed(0)
    net = CellPositivityNet(CellNetSpec(3, 0, hidden=8, patch_side=16, patch_width=4))
    return CellProportionModel(net, "ours-cells-cnn", PAPER_FIVE, ["a", "b", "c"])


def test_a_patch_network_reads_the_patches_and_round_trips(tmp_path) -> None:
    model = _patch_model()
    assert model.reads_patches and not _model().reads_patches
    rng = np.random.default_rng(2)
    features = rng.normal(size=(6, 3)).astype(np.float32)
    patches = rng.integers(0, 80, (6, 2, 16, 16)).astype(np.uint8)
    model.net.standardise_on(torch.from_numpy(features))
    assert torch.equal(model.net.mean[3:], torch.zeros(16))  # the encoder's output is not standardised
    p = model.cell_probabilities(features, patches=patches)
    other = patches.copy()
    other[0, 1] = 200  # a brown first cell: its probability changes, the others' do not
    q = model.cell_probabilities(features, patches=other)
    assert q[0] != p[0] and np.array_equal(q[1:], p[1:])
    loaded = load_cell_model(model.save(tmp_path / "m"))
    assert loaded.reads_patches and np.array_equal(loaded.cell_probabilities(features, patches=patches), p)
    with pytest.raises(ValueError, match="patch"):
        model.cell_logits(features)
    with pytest.raises(ValueError, match="16 px"):
        model.cell_logits(features, rng.integers(0, 9, (6, 2, 24, 24)).astype(np.uint8))


def test_the_call_bias_is_the_smallest_shift_whose_counts_meet_the_intervals_and_moves_every_call(tmp_path):
    """Two cores by hand: '50-75 %' with logits (-0.3, -0.6, -1.5, 2.0) needs b >= 0.5 (2 of 4
    called); '0-1 %' with (-0.8, -2.0) stays at 0 of 2 up to b < 0.8: b = 0.5 meets both. The model
    adds b to every logit: the count, p(positive) and the folder follow."""
    from maskllp.proportion.cells import fit_call_bias

    cores = [np.array([-0.3, -0.6, -1.5, 2.0]), np.array([-0.8, -2.0])]
    assert fit_call_bias(cores, [3, 0], PAPER_FIVE) == 0.5
    assert fit_call_bias([np.zeros(0)], [2], PAPER_FIVE) == 0.0
    model = _model()
    features = np.random.default_rng(4).normal(size=(9, 5)).astype(np.float32)
    raw = model.cell_logits(features)
    model.call_bias = 0.75
    assert np.allclose(model.cell_logits(features), raw + 0.75)
    shifted = 1 / (1 + np.exp(-(raw.astype(np.float64) + 0.75)))
    assert model.predict_features(features).proportion == pytest.approx(float(shifted.mean()), rel=1e-5)
    loaded = load_cell_model(model.save(tmp_path / "m"))
    assert loaded.call_bias == 0.75 and np.allclose(loaded.cell_logits(features), raw + 0.75)
