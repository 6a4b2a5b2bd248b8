"""Training of every stage-2 entry of the registry (two steps on tiny random cores), then prediction."""

from __future__ import annotations

import logging

import pytest
import torch

from maskllp.methods import METHODS, STAGE2, get_method
from maskllp.training.proportion import train_proportion_model

MASKED = {m.name for m in METHODS.values() if m.uses_mask}


def test_det_has_no_stage2_recipe(cpu_config) -> None:
    with pytest.raises(ValueError, match="stage-1"):
        get_method("det").recipe(cpu_config)


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.fitting is STAGE2])
def test_each_entry_trains_two_steps_and_predicts(name: str, items, cpu_config, tmp_path, caplog) -> None:
    before = {k: v.clone() for k, v in _fresh_net_state(name).items()}
    with caplog.at_level(logging.WARNING, logger="maskllp"):
        model = train_proportion_model(items, get_method(name).recipe(cpu_config), cpu_config, tmp_path)
    assert model.summary is not None and model.summary.n_train + model.summary.n_val <= len(items)
    if name in MASKED:  # the core with an empty mask is left out, and the log says so
        assert model.summary.n_skipped == 1 and "empty tumour mask" in caplog.text
    else:
        assert model.summary.n_skipped == 0
    after = model.net.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    preds = model.predict_items(items)
    assert len(preds) == len(items)
    for p, it in zip(preds, items, strict=True):
        if name in MASKED and not it.has_tumour:  # w/o-mask methods use M = 1: always defined
            assert p.proportion is None and p.interval is None
        else:
            assert 0 <= p.proportion <= 1 and 0 <= p.interval < 5
    assert (tmp_path / "logs" / "metrics.csv").is_file()


def _fresh_net_state(name: str) -> dict[str, torch.Tensor]:
    """The initial weights training starts from (same seed as training)."""
    import lightning as L

    from maskllp.proportion.network import ProportionNet

    L.seed_everything(0, verbose=False)
    return ProportionNet(get_method(name).network_spec(5)).state_dict()


def test_a_step_budget_ending_mid_epoch_stops_cleanly(items, cpu_config, tmp_path) -> None:
    cpu_config.proportion.max_steps = 3  # 8 training cores in batches of 4: stops inside epoch 2
    model = train_proportion_model(items, get_method("ours").recipe(cpu_config), cpu_config, tmp_path)
    assert model.summary.best_epoch == 0


def test_validation_split_is_stratified_and_seeded() -> None:
    import numpy as np

    from maskllp.training.proportion import validation_split

    intervals = np.repeat(np.arange(5), 10)
    train, val = validation_split(intervals, 0.2, seed=0)
    assert len(val) == 10 and np.bincount(intervals[val]).tolist() == [2] * 5
    assert not set(train) & set(val) and len(train) + len(val) == 50
    assert np.array_equal(val, validation_split(intervals, 0.2, seed=0)[1])
    assert len(validation_split(intervals, 0.0, seed=0)[1]) == 0
    # an interval with a single core: a plain random split instead
    train, val = validation_split(np.array([0, 1, 1, 1, 2, 2]), 0.5, seed=0)
    assert len(val) == 3
    # too few cores on the training side for every interval: random, not an error
    train, val = validation_split(np.array([0, 0, 1, 1, 2, 2, 3, 3]), 0.6, seed=0)
    assert len(val) == 5 and len(train) == 3


def test_warmup_then_cosine_by_hand() -> None:
    from maskllp.training.proportion import warmup_cosine

    f = warmup_cosine(100, 0.1)  # 10 warm-up steps, then 90 of cosine
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)


@pytest.mark.parametrize("channels", ["rgb", "stain"])
def test_schedule_and_stain_input_train(items, cpu_config, tmp_path, channels) -> None:
    cpu_config.proportion.schedule = "cosine"
    cpu_config.proportion.input_channels = channels
    recipe = get_method("ours").recipe(cpu_config)
    assert recipe.spec.input_channels == channels
    model = train_proportion_model(items, recipe, cpu_config, tmp_path)
    assert all(p.proportion is None or 0 <= p.proportion <= 1 for p in model.predict_items(items))
    assert model.net.spec.input_channels == channels


def test_stain_channels_make_glass_zero_and_separate_brown_from_blue() -> None:
    from maskllp.proportion.network import stain_channels

    white = torch.ones(1, 3, 2, 2)
    assert torch.allclose(stain_channels(white), torch.zeros(1, 3, 2, 2), atol=1e-6)
    brown = torch.tensor([150.0, 90.0, 40.0]).view(1, 3, 1, 1) / 255
    blue = torch.tensor([90.0, 80.0, 170.0]).view(1, 3, 1, 1) / 255
    assert stain_channels(brown)[0, 2] > stain_channels(blue)[0, 2]  # DAB
    assert stain_channels(blue)[0, 0] > stain_channels(brown)[0, 0]  # hematoxylin


def test_clicks_land_where_the_core_lies_on_the_canvas(annotated_cohort_csv) -> None:
    import numpy as np

    from maskllp.config import Config
    from maskllp.intervals import PAPER_FIVE
    from maskllp.io.manifest import read_cohort
    from maskllp.proportion.inputs import InputFit, Stage2Item
    from maskllp.training.proportion import canvas_clicks

    entry = read_cohort(annotated_cohort_csv, PAPER_FIVE).entries[0]  # a 48 x 64 core
    fit = InputFit(32, 32, 4, 0, 24, 32)  # resampled to half size, 4 rows down
    item = Stage2Item("c", "p", 0, 0.005, None, np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), bool),
                      entry=entry, fit=fit)
    clicks = canvas_clicks(item, Config().classes)
    rows = [r.split(",") for r in entry.points.read_text().splitlines()[1:]]
    stained = [(float(y) - 0.5, float(x) - 0.5, c == "Positive") for x, y, c in rows if c != "Stroma"]
    expect = np.array([[(y + 0.5) * 0.5 - 0.5 + 4, (x + 0.5) * 0.5 - 0.5, p] for y, x, p in stained])
    np.testing.assert_allclose(clicks, expect)  # stroma clicks are not tumour: left out
    bare = Stage2Item("c", "p", 0, 0.005, None, item.image, item.mask)  # no entry, no points file
    assert canvas_clicks(bare, Config().classes) is None


def test_click_supervision_trains_and_clicked_cores_always_train(items, cpu_config, tmp_path) -> None:
    import dataclasses

    import numpy as np

    from maskllp.training.proportion import split_items

    clicked = [dataclasses.replace(it, clicks=np.array([[20.0, 20.0, 1.0], [30.0, 30.0, 0.0]]))
               if i < 3 else it for i, it in enumerate(items[:-1])]
    train, val = split_items(clicked, 0.5, seed=0)
    assert {0, 1, 2} <= set(train.tolist()) and not {0, 1, 2} & set(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(len(clicked)))
    cpu_config.proportion.click_weight = 1.0
    model = train_proportion_model(clicked, get_method("ours").recipe(cpu_config), cpu_config, tmp_path)
    _, val_at_config = split_items(clicked, cpu_config.proportion.val_fraction, cpu_config.trainer.seed)
    assert model.summary.n_val == len(val_at_config) >= 1
    header = (tmp_path / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "train_click_loss" in header
