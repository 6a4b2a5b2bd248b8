"""A fitted stage-2 model saves to a model folder and loads back to identical predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from maskllp.errors import InputError
from maskllp.intervals import CLINICAL_TIERS, scheme_from_boundaries
from maskllp.methods import get_method
from maskllp.proportion.model import load_proportion_model
from maskllp.training.proportion import train_proportion_model


def _train(items, name, config, work):
    return train_proportion_model(items, get_method(name).recipe(config), config, work)


@pytest.mark.parametrize("name", ["ours", "o-reg"])
def test_save_load_gives_identical_deterministic_predictions(name, items, cpu_config, tmp_path) -> None:
    model = _train(items, name, cpu_config, tmp_path / "work")
    before = model.predict_items(items)
    assert model.predict_items(items) == before  # deterministic
    folder = model.save(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "proportion" and config["method"] == name
    assert config["input"]["resize"] == "pixel-size"
    loaded = load_proportion_model(folder)
    assert loaded.method_name == name and loaded.scheme == model.scheme and loaded.input == model.input
    assert loaded.predict_items(items) == before


def test_custom_scheme_round_trips(items, cpu_config, tmp_path) -> None:
    scheme = scheme_from_boundaries("mine", [0, 0.01, 0.5, 1.0])
    cpu_config.intervals.scheme = "mine"
    cpu_config.intervals.boundaries = [0, 0.01, 0.5, 1.0]
    for it in items:
        object.__setattr__(it, "interval", it.interval % 3)
    model = _train(items, "class", cpu_config, tmp_path / "work")
    loaded = load_proportion_model(model.save(tmp_path / "model"))
    assert loaded.scheme.boundaries.tolist() == scheme.boundaries.tolist()
    assert loaded.scheme.names == scheme.names
    assert loaded.net.spec.n_outputs == 3


def test_an_empty_mask_is_undefined_and_maps_have_the_stride(items, cpu_config, tmp_path) -> None:
    model = _train(items, "ours", cpu_config, tmp_path / "work")
    image, fit = items[0].load_image(), items[0].input_fit()
    p = model.predict_cores([(image, items[0].load_mask(), fit)])[0]
    assert 0 < p.proportion < 1 and p.s_p > 0 and p.s_n > 0
    assert model.predict_cores([(image, np.zeros((64, 64), bool), fit)])[0].proportion is None
    assert model.maps(image, items[0].load_mask(), fit).shape == (2, 8, 8)


def test_broken_folders_are_input_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="model folder not found"):
        load_proportion_model(tmp_path / "nothing")


def test_clinical_scheme_is_restored_with_its_aliases(items, cpu_config, tmp_path) -> None:
    cpu_config.intervals.scheme = "clinical3"
    for it in items:
        object.__setattr__(it, "interval", it.interval % 3)
    model = _train(items, "class", cpu_config, tmp_path / "work")
    assert load_proportion_model(model.save(tmp_path / "m")).scheme is CLINICAL_TIERS
