"""Training the cell-level method: clicked cells become labels; interval labels alone teach a
separable toy cell population which cells are positive."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from maskllp.config import Config
from maskllp.config.proportion import LossConfig
from maskllp.detection.measurements import MEASUREMENT_NAMES
from maskllp.intervals import PAPER_FIVE
from maskllp.io.manifest import read_cohort
from maskllp.proportion.cells import CellBag
from maskllp.proportion.losses import weighted_focal_proportion_loss
from maskllp.training.cells import (
    click_labels,
    collate_bags,
    interval_consistent_labels,
    split_bags,
    train_cell_model,
)

F = len(MEASUREMENT_NAMES)


def _toy_bags(n_bags: int, seed: int) -> tuple[list[CellBag], list[np.ndarray]]:
    """Bags of 40 cells; a positive cell has feature 1 near 2, a negative near 0 (noise elsewhere)."""
    rng = np.random.default_rng(seed)
    bags, truth = [], []
    for b in range(n_bags):
        tps = rng.choice([0.0, rng.uniform(0.01, 0.25), rng.uniform(0.25, 1.0)])
        positive = rng.random(40) < tps
        x = rng.normal(0, 1, (40, F)).astype(np.float32)
        x[:, 1] = np.where(positive, 2.0, 0.0) + rng.normal(0, 0.3, 40)
        bags.append(CellBag(f"b{b}", int(PAPER_FIVE.index_of(positive.mean())), x, np.full(40, -1, np.int8)))
        truth.append(positive)
    return bags, truth


def test_interval_labels_alone_teach_which_cells_are_positive(tmp_path) -> None:
    cfg = Config()
    cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.progress_bar = "cpu", "1", False
    cfg.proportion.cells.max_epochs = 80
    cfg.proportion.cells.click_weight = 0.0
    bags, _ = _toy_bags(60, 0)
    loss = weighted_focal_proportion_loss(PAPER_FIVE, LossConfig())
    model = train_cell_model(bags, "ours-cells", loss, 0, cfg, tmp_path)
    test, truth = _toy_bags(20, 1)
    accuracy = np.mean([np.mean((model.cell_probabilities(b.features) > 0.5) == t)
                        for b, t in zip(test, truth, strict=True)])
    assert accuracy > 0.9
    assert model.summary is not None and model.summary.n_train + model.summary.n_val == 60
    assert (tmp_path / "logs" / "metrics.csv").is_file()


def test_clicked_cores_always_train_and_the_split_holds_out_labelled_cores_alone() -> None:
    bags, _ = _toy_bags(20, 0)
    for k in (0, 3, 7, 11, 15):  # clicked cores: two clicked cells each
        labels = np.full(40, -1, np.int8)
        labels[:2] = (1, 0)
        bags[k] = replace(bags[k], labels=labels)
    bags.append(CellBag("clicks only", None, bags[0].features, bags[0].labels))  # no interval label
    train, val = split_bags(bags, 0.5, seed=0)
    clicked = {b.name for b in bags if (b.labels >= 0).any()}
    assert len(train) + len(val) == len(bags) and {b.name for b in train} >= clicked
    assert val and all(b.interval is not None and b.name not in clicked for b in val)
    assert 6 <= len(val) <= 9  # about half of the 15 cores with an interval label alone
    assert [b.name for b in train] == [b.name for b in bags if b.name not in {v.name for v in val}]
    train0, val0 = split_bags(bags, 0.0, seed=0)
    assert [b.name for b in train0] == [b.name for b in bags] and val0 == []


def test_the_refit_trains_on_every_core_for_the_chosen_epochs(tmp_path) -> None:
    """With ``refit`` the returned network is trained again on all 60 cores (validation ones too)
    for best_epoch + 1 epochs; without, it is the early-stopped one. Both learn the toy cells."""
    import csv

    cfg = Config()
    cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.progress_bar = "cpu", "1", False
    cfg.proportion.cells.max_epochs, cfg.proportion.cells.click_weight = 80, 0.0
    bags, _ = _toy_bags(60, 0)
    loss = weighted_focal_proportion_loss(PAPER_FIVE, LossConfig())
    cfg.proportion.cells.refit = False
    plain = train_cell_model(bags, "ours-cells", loss, 0, cfg, tmp_path / "plain")
    assert not (tmp_path / "plain" / "refit").exists()
    cfg.proportion.cells.refit = True
    again = train_cell_model(bags, "ours-cells", loss, 0, cfg, tmp_path / "refit")
    with open(tmp_path / "refit" / "refit" / "logs" / "metrics.csv") as f:
        epochs = {int(r["epoch"]) for r in csv.DictReader(f)}
    assert again.summary is not None and max(epochs) + 1 == again.summary.best_epoch + 1
    test, truth = _toy_bags(20, 1)
    for model in (plain, again):
        hits = [np.mean((model.cell_probabilities(b.features) > 0.5) == t)
                for b, t in zip(test, truth, strict=True)]
        assert np.mean(hits) > 0.9
    assert again.range_temperature == plain.range_temperature  # chosen by the first network, on unseen cores
    assert again.range_margin == plain.range_margin is not None and 0.0 <= again.range_margin <= 1.0
    assert not np.allclose(plain.cell_logits(test[0].features), again.cell_logits(test[0].features))


@pytest.mark.parametrize("refit", [True, False])
def test_an_ensemble_trains_its_members_from_successive_seeds(tmp_path, refit) -> None:
    """``ensemble = 3``: the first member is the network ``ensemble = 1`` gives (same seed, same
    data), the others differ; the model's logits are their mean, and it still learns the toy cells."""
    cfg = Config()
    cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.progress_bar = "cpu", "1", False
    cfg.proportion.cells.max_epochs, cfg.proportion.cells.click_weight = 80, 0.0
    cfg.proportion.cells.refit = refit
    bags, _ = _toy_bags(60, 0)
    loss = weighted_focal_proportion_loss(PAPER_FIVE, LossConfig())
    single = train_cell_model(bags, "ours-cells", loss, 0, cfg, tmp_path / "one")
    cfg.proportion.cells.ensemble = 3
    three = train_cell_model(bags, "ours-cells", loss, 0, cfg, tmp_path / "three")
    assert three.members == 3 and three.range_temperature == single.range_temperature
    test, truth = _toy_bags(10, 1)
    x = test[0].features
    members = [three.probabilities_of(np.asarray(m(torch.from_numpy(x)).detach().numpy()))
               for m in three.net.members]  # type: ignore[union-attr]
    assert np.allclose(members[0], single.cell_probabilities(x), atol=1e-6)
    assert not np.allclose(members[1], members[0])
    hits = [np.mean((three.cell_probabilities(b.features) > 0.5) == t)
            for b, t in zip(test, truth, strict=True)]
    assert np.mean(hits) > 0.9


@pytest.mark.parametrize("p, interval, expected", [
    ([0.9, 0.1, 0.6, 0.3], 2, [1, 0, 0, 0]),  # '25-50 %' of 4 cells: only k = 1 (k = 2 is 50 %)
    ([0.9, 0.8, 0.6, 0.3], 4, [1, 1, 1, 0]),  # '75-100 %': k in {3, 4}, sum(p) = 2.6 -> 3
    ([0.1, 0.9, 0.2, 0.95], 4, [0, 1, 1, 1]),  # sum(p) = 2.15 -> 3 (the lowest allowed), highest p first
    ([0.2, 0.2], 0, [0, 0]),  # '0-1 %': none positive
    ([0.9, 0.8, 0.6], 1, [-1, -1, -1]),  # '1-25 %' has no count of 3 cells: no labels
    ([], 0, []),
])
def test_interval_consistent_labels_by_hand(p, interval, expected) -> None:
    labels = interval_consistent_labels(np.array(p, np.float32), interval, PAPER_FIVE)
    assert labels.dtype == np.int8 and labels.tolist() == expected


def test_self_labelling_rounds_retrain_on_labels_that_agree_with_the_intervals(tmp_path) -> None:
    """``self_label_rounds = 1``: one more fit (logged under self-label-1) with the hard labels of the
    first model added; the result differs from the first model and still learns the toy cells."""
    cfg = Config()
    cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.progress_bar = "cpu", "1", False
    cfg.proportion.cells.max_epochs, cfg.proportion.cells.click_weight = 80, 0.0
    bags, _ = _toy_bags(60, 0)
    loss = weighted_focal_proportion_loss(PAPER_FIVE, LossConfig())
    first = train_cell_model(bags, "ours-cells", loss, 0, cfg, tmp_path / "first")
    cfg.proportion.cells.self_label_rounds = 1
    again = train_cell_model(bags, "ours-cells", loss, 0, cfg, tmp_path / "again")
    assert (tmp_path / "again" / "self-label-1" / "logs" / "metrics.csv").is_file()
    test, truth = _toy_bags(20, 1)
    assert not np.allclose(first.cell_logits(test[0].features), again.cell_logits(test[0].features))
    hits = [np.mean((again.cell_probabilities(b.features) > 0.5) == t)
            for b, t in zip(test, truth, strict=True)]
    assert np.mean(hits) > 0.9


def test_self_labels_enter_the_loss_only_with_their_weight() -> None:
    from maskllp.proportion.cells import CellNetSpec, CellPositivityNet
    from maskllp.training.cells import CellBagModule

    bag = CellBag("a", 0, np.zeros((2, F), np.float32), np.full(2, -1, np.int8),
                  pseudo=np.array([1, -1], np.int8))
    batch = collate_bags([bag])
    assert batch["pseudo"].tolist() == [1, -1]
    logits = torch.tensor([0.0, 3.0])
    loss = weighted_focal_proportion_loss(PAPER_FIVE, LossConfig())
    net = CellPositivityNet(CellNetSpec(F, 0, 8, 0.0))
    without = CellBagModule(net, loss, PAPER_FIVE, 0.0, 1e-3, 0.0)._loss(batch, logits)
    module = CellBagModule(net, loss, PAPER_FIVE, 0.0, 1e-3, 0.0, self_label_weight=2.0)
    weighted = module._loss(batch, logits)
    assert float(weighted - without) == pytest.approx(2.0 * np.log(2.0), rel=1e-5)  # BCE(0 logit, 1) = ln 2


def test_collate_flattens_bags_with_their_index() -> None:
    bags = [CellBag("a", 1, np.ones((2, 3), np.float32), np.array([1, -1], np.int8)),
            CellBag("b", None, np.zeros((1, 3), np.float32), np.array([-1], np.int8))]
    batch = collate_bags(bags)
    assert batch["features"].shape == (3, 3) and batch["bag"].tolist() == [0, 0, 1]
    assert batch["labels"].tolist() == [1, -1, -1] and batch["interval"].tolist() == [1, -1]


def test_clicked_cells_label_the_matching_tumour_cells(annotated_cohort_csv) -> None:
    entry = read_cohort(annotated_cohort_csv, PAPER_FIVE).entries[0]
    points = entry.points.read_text().splitlines()[1:]
    x, y, cls = points[0].split(",")  # the fixture's first click is "Positive", the third "Stroma"
    x2, y2, _ = points[1].split(",")
    far = [-50.0, -50.0]  # no click there
    yx = np.array([[float(y) - 0.5, float(x) - 0.5], [float(y2) - 0.5, float(x2) - 0.5], far])
    labels = click_labels(yx, entry, Config().classes, radius_px=2.0)
    assert cls == "Positive" and labels.tolist() == [1, 0, -1]


@pytest.mark.parametrize("estimate", ["mean", "count"])
def test_estimate_setting_reaches_the_model(tmp_path, estimate) -> None:
    cfg = Config()
    cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.progress_bar = "cpu", "1", False
    cfg.proportion.cells.max_epochs = 2
    cfg.proportion.cells.estimate = estimate
    bags, _ = _toy_bags(10, 2)
    model = train_cell_model(bags, "ours-cells", weighted_focal_proportion_loss(PAPER_FIVE, LossConfig()), 0,
                             cfg, tmp_path)
    assert model.estimate == estimate


def test_binary_entropy_by_hand_and_the_entropy_term_of_the_loss() -> None:
    import math

    import torch

    from maskllp.proportion.cells import CellNetSpec, CellPositivityNet
    from maskllp.training.cells import CellBagModule, binary_entropy

    x = torch.tensor([0.0, math.log(3.0), 50.0])  # p = 0.5, 0.75, ~1
    expected = [math.log(2.0), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), 0.0]
    assert torch.allclose(binary_entropy(x), torch.tensor(expected), atol=1e-6)
    net = CellPositivityNet(CellNetSpec(F, 0, 8, 0.0))
    batch = collate_bags(_toy_bags(3, 0)[0])
    loss = weighted_focal_proportion_loss(PAPER_FIVE, LossConfig())
    plain, regularised = (CellBagModule(net, loss, PAPER_FIVE, 0.0, 1e-3, 0.0, w) for w in (0.0, 0.5))
    logits = plain.net(batch["features"])
    extra = regularised._loss(batch, logits) - plain._loss(batch, logits)
    assert torch.allclose(extra, 0.5 * binary_entropy(logits).mean())


def _ring_bags(n_bags: int, seed: int, side: int = 16) -> tuple[list[CellBag], list[np.ndarray]]:
    """Bags of 40 cells whose features are noise; a positive cell's patch has a DAB ring (a
    membrane), a negative one's DAB is as bright on average but spread evenly (a cytoplasmic tint)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side] - side / 2 + 0.5
    ring = (np.abs(np.hypot(yy, xx) - 5) < 1).astype(np.float32)
    bags, truth = [], []
    for b in range(n_bags):
        tps = rng.choice([0.0, rng.uniform(0.01, 0.25), rng.uniform(0.25, 1.0)])
        positive = rng.random(40) < tps
        patches = rng.normal(20, 4, (40, 2, side, side))
        dab = np.where(positive[:, None, None], 80 * ring, 80 * ring.mean())
        patches[:, 1] += dab
        x = rng.normal(0, 1, (40, F)).astype(np.float32)
        bags.append(CellBag(f"b{b}", int(PAPER_FIVE.index_of(positive.mean())), x, np.full(40, -1, np.int8),
                            np.clip(patches, 0, 255).astype(np.uint8)))
        truth.append(positive)
    return bags, truth


def test_a_patch_network_learns_from_interval_labels_what_only_the_patches_show(tmp_path) -> None:
    cfg = Config()
    cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.progress_bar = "cpu", "1", False
    cfg.trainer.precision = "32-true"
    cfg.proportion.cells.patch_max_epochs, cfg.proportion.cells.click_weight = 40, 0.0
    cfg.proportion.cells.patch_width = 4
    bags, _ = _ring_bags(60, 0)
    loss = weighted_focal_proportion_loss(PAPER_FIVE, LossConfig())
    model = train_cell_model(bags, "ours-cells-cnn", loss, 0, cfg, tmp_path)
    test, truth = _ring_bags(20, 1)

    def accuracy(m) -> float:
        return float(np.mean([np.mean((m.cell_probabilities(b.features, patches=b.patches) > 0.5) == t)
                              for b, t in zip(test, truth, strict=True)]))

    assert model.reads_patches and accuracy(model) > 0.9
    plain = train_cell_model([replace(b, patches=None) for b in bags], "ours-cells", loss, 0, cfg,
                             tmp_path / "plain")
    assert np.mean([np.mean((plain.cell_probabilities(b.features) > 0.5) == t)
                    for b, t in zip(test, truth, strict=True)]) < 0.85  # the features alone cannot tell


def test_turned_patches_are_the_eight_symmetries_of_each_patch() -> None:
    import torch

    from maskllp.training.cells import turned_patches

    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3).repeat(50, 1, 1, 1)
    out = turned_patches(x, torch.Generator().manual_seed(0))
    symmetries = [torch.rot90(x[0], k, (1, 2)) for k in range(4)]
    symmetries += [s.flip(2) for s in symmetries]
    seen = {next(k for k, s in enumerate(symmetries) if torch.equal(o, s)) for o in out[::2]}
    assert seen == set(range(8))  # every one drawn, and each output is one of them
    assert torch.equal(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))


def test_stain_affine_is_what_the_measurements_of_the_restained_image_give() -> None:
    from maskllp.detection.measurements import stain_measurements
    from maskllp.training.cells import stain_affine

    rng = np.random.default_rng(3)
    stains = rng.uniform(0.0, 1.2, (48, 48, 3)).astype(np.float32)
    yx = np.array([[20.0, 20.0], [30.5, 12.2], [10.0, 37.0]])
    (h_scale, h_shift), (d_scale, d_shift) = (0.8, 0.05), (1.15, -0.1)
    restained = stains * np.float32([h_scale, 1.3, d_scale]) + np.float32([h_shift, 0.2, d_shift])
    before = torch.from_numpy(stain_measurements(stains, yx, 2.0))
    after = stain_measurements(restained, yx, 2.0)
    trunk = torch.arange(3 * 4, dtype=torch.float32).reshape(3, 4)
    scale = torch.tensor([[h_scale, d_scale]] * 3)
    shift = torch.tensor([[h_shift, d_shift]] * 3)
    got = stain_affine(torch.cat([before, trunk], dim=1), scale, shift)
    np.testing.assert_allclose(got[:, :F].numpy(), after, atol=1e-5)
    assert torch.equal(got[:, F:], trunk)  # trunk features are not stains


def test_stain_jitter_moves_the_cells_of_one_core_together_and_zero_is_off() -> None:
    from maskllp.training.cells import stain_jittered

    batch = collate_bags(_toy_bags(3, 0)[0])
    x, bag = batch["features"], batch["bag"]
    assert stain_jittered(x, bag, 3, 0.0) is x
    y = stain_jittered(x, bag, 3, 0.2, torch.Generator().manual_seed(0))
    assert not torch.allclose(x, y)
    for b in range(3):  # one (scale, shift) per stain and core: solve it from two cells, check all
        xb, yb = x[bag == b], y[bag == b]
        col = 1  # a DAB column ("DAB mean 0-2 um")
        a = (yb[0, col] - yb[1, col]) / (xb[0, col] - xb[1, col])
        shift = yb[0, col] - a * xb[0, col]
        assert 0.8 - 1e-4 <= float(a) <= 1.2 + 1e-4 and abs(float(shift)) <= 0.2 + 1e-4
        torch.testing.assert_close(yb[:, col], a * xb[:, col] + shift, atol=1e-4, rtol=1e-4)


def test_stain_jitter_reaches_training_only(tmp_path) -> None:
    from maskllp.proportion.cells import CellNetSpec, CellPositivityNet
    from maskllp.training.cells import CellBagModule

    batch = collate_bags(_toy_bags(3, 0)[0])
    net = CellPositivityNet(CellNetSpec(F, 0, 8, 0.0))
    module = CellBagModule(net, weighted_focal_proportion_loss(PAPER_FIVE, LossConfig()), PAPER_FIVE,
                           0.0, 1e-3, 0.0, stain_jitter=0.2)
    plain = net(batch["features"])
    torch.testing.assert_close(module._logits(batch), plain)
    assert not torch.allclose(module._logits(batch, train=True), plain)
    cfg = Config()
    cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.progress_bar = "cpu", "1", False
    cfg.proportion.cells.max_epochs, cfg.proportion.cells.stain_jitter = 3, 0.1
    model = train_cell_model(_toy_bags(12, 0)[0], "ours-cells", weighted_focal_proportion_loss(
        PAPER_FIVE, LossConfig()), 0, cfg, tmp_path)
    assert model.summary is not None
    with pytest.raises(ValueError, match="stain_jitter"):
        replace(cfg.proportion.cells, stain_jitter=1.0)


def test_partial_points_are_clicks_too(tmp_path) -> None:
    from maskllp.classes import CellClass
    from maskllp.io.annotations import PointAnnotations, write_point_annotations_geojson
    from maskllp.io.images import write_image
    from maskllp.io.manifest import write_cohort

    write_image(tmp_path / "c.png", np.zeros((40, 40, 3), np.uint8), mpp=0.5)
    write_point_annotations_geojson(tmp_path / "all.geojson", PointAnnotations(
        np.array([[5.0, 5.0]]), np.array([CellClass.NEGATIVE_TUMOUR])))
    write_point_annotations_geojson(tmp_path / "some.geojson", PointAnnotations(
        np.array([[20.0, 20.0], [30.0, 30.0]]), np.array([CellClass.POSITIVE_TUMOUR, CellClass.NON_TUMOUR])))
    write_cohort(tmp_path / "m.csv", [{"image": "c.png", "label": "1-25 %", "points": "all.geojson",
                                       "partial_points": "some.geojson"}])
    entry = read_cohort(tmp_path / "m.csv", PAPER_FIVE).entries[0]
    yx = np.array([[5.0, 5.0], [20.0, 20.0], [30.0, 30.0]])
    assert click_labels(yx, entry, Config().classes, radius_px=2.0).tolist() == [0, 1, -1]
