"""The Table 1 registry: names, display names, heads, masks (training of each entry: tests/proportion)."""

from __future__ import annotations

import pytest

from maskllp.errors import InputError
from maskllp.intervals import CLINICAL_TIERS
from maskllp.methods import METHODS, get_method, parse_methods

TABLE_1 = ["det", "class", "o-reg", "prop-nomask", "ours-nomask", "lpi", "prop", "wprop", "wprop-listnet",
           "focalprop", "ours"]
REGISTRY = [*TABLE_1, "ours-cells", "ours-cells-focal", "ours-cells-count", "ours-cells-cnn"]
MASKED = {"lpi", "prop", "wprop", "wprop-listnet", "focalprop", "ours", "ours-cells", "ours-cells-focal",
          "ours-cells-count", "ours-cells-cnn"}


def test_registry_holds_table_1_in_order() -> None:
    assert list(METHODS) == REGISTRY
    assert {m.name for m in METHODS.values() if m.uses_mask} == MASKED
    assert METHODS["ours"].display_name == "Ours" and METHODS["prop-nomask"].display_name == "Prop w/o mask"
    assert {m.head for m in METHODS.values()} == {"count", "class", "ordinal", "maps", "cells"}
    assert METHODS["ours"].loss_factory is METHODS["ours-nomask"].loss_factory


def test_get_and_parse_methods() -> None:
    assert get_method("OURS") is METHODS["ours"]
    with pytest.raises(InputError, match="unknown method 'ourz'"):
        get_method("ourz")
    assert parse_methods("all") == list(METHODS.values())
    assert [m.name for m in parse_methods("ours, prop,ours")] == ["ours", "prop"]
    with pytest.raises(InputError):
        parse_methods(" , ")


def test_network_specs_follow_the_head_and_the_scheme() -> None:
    assert get_method("ours").network_spec(5).n_outputs == 2
    assert get_method("class").network_spec(len(CLINICAL_TIERS)).n_outputs == 3
    assert get_method("o-reg").network_spec(5).n_outputs == 4
    assert get_method("ours").network_spec(5).masked
    assert not get_method("ours-nomask").network_spec(5).masked
    with pytest.raises(ValueError, match="stage-1"):
        get_method("det").network_spec(5)


# ------------------------------------------------------------------ every entry through the registry
def _cohort_items(cohort_csv, stage1_dir, config, tmp_path):
    from maskllp.io.manifest import read_cohort
    from maskllp.proportion.inputs import InputSpec
    from maskllp.training.inputs import ItemCache, Stage1MaskSource, prepare_items

    scheme = config.intervals.build()
    entries = read_cohort(cohort_csv, scheme).entries
    source = Stage1MaskSource(stage1_dir, cells_root=tmp_path / "cache")
    cache = ItemCache(tmp_path / "cache", InputSpec.from_config(config.proportion))
    items = prepare_items(entries, scheme, source, cache)
    return items, source


@pytest.mark.parametrize("name", REGISTRY)
def test_each_entry_fits_through_the_registry_and_predicts(name, annotated_cohort_csv, stage1_dir,
                                                           cv_config, tmp_path) -> None:
    from maskllp.methods import FitSetup, load_fitted

    cv_config.classifier.max_epochs = 1
    cv_config.classifier.steps_per_epoch = 2
    cv_config.classifier.backbone = "resnet18"
    cv_config.classifier.feature_layer = "layer1"
    items, source = _cohort_items(annotated_cohort_csv, stage1_dir, cv_config, tmp_path)
    method = get_method(name)
    setup = FitSetup(source, stage1_dir, None, annotated_cohort_csv, cv_config.intervals.build())
    method.check(setup)
    fitted = method.fit(items[:8], setup, cv_config, tmp_path / "work")
    preds = fitted.predict_items(items[8:])
    assert len(preds) == 4
    assert all(p.proportion is None or 0 <= p.proportion <= 1 for p in preds)
    loaded = load_fitted(fitted.save(tmp_path / "model"))
    assert loaded.method is method
    assert loaded.predict_items(items[8:]) == preds


def test_det_without_a_detector_or_model_is_refused_before_any_work(cv_config) -> None:
    from maskllp.methods import FitSetup

    with pytest.raises(InputError, match="Det needs --stage1"):
        get_method("det").check(FitSetup())


def test_a_core_gives_the_same_tensors_at_training_and_at_prediction(cohort_csv, stage1_dir, cv_config,
                                                                     tmp_path) -> None:
    import torch

    from maskllp.detection.model import Stage1Model
    from maskllp.intervals import PAPER_FIVE
    from maskllp.io.images import open_image
    from maskllp.methods import Stage2Fitted
    from maskllp.proportion.inputs import InputSpec, Stage2Dataset, core_tensors
    from maskllp.proportion.model import ProportionModel
    from maskllp.proportion.network import ProportionNet

    items, _ = _cohort_items(cohort_csv, stage1_dir, cv_config, tmp_path)
    ours = get_method("ours")
    stage1 = Stage1Model.load(stage1_dir)
    net = ProportionNet(ours.network_spec(5))
    spec = InputSpec.from_config(cv_config.proportion)
    fitted = Stage2Fitted(ours, ProportionModel(net, "ours", PAPER_FIVE, spec), stage1)
    for k in (0, 5):
        entry = items[k].entry
        with open_image(entry.image, entry.mpp) as reader:
            cells = stage1.detect(reader)
        image, mask, fit, _ = fitted.network_input(entry.image, entry.mpp, cells)
        at_prediction = core_tensors(image, mask, fit)
        at_training = Stage2Dataset(items, augment=False)[k]
        for name in ("image", "mask", "extent"):
            assert torch.equal(at_training[name], at_prediction[name]), name
        assert at_prediction["mask"].sum() > 0
