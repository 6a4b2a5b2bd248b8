"""maskllp predict: a model folder (stage 2 + the stage 1 it carries) -> per-core outputs."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch

from maskllp.backbones import inference_autocast, resolve_inference_precision
from maskllp.config import Config
from maskllp.errors import ProblemList
from maskllp.inference.pipeline import Predictor, PredictRun, predict_cores
from maskllp.io.images import open_image
from maskllp.methods import get_method


def _config() -> Config:
    cfg = Config()
    cfg.trainer.progress_bar = False
    return cfg


def test_predict_writes_every_output_and_is_deterministic(tmp_path, cohort_csv, stage1_dir, random_model):
    model = random_model(tmp_path, stage1_dir)
    images = sorted((cohort_csv.parent / "cores").glob("*.png"))[:2]
    runs = []
    for name in ("a", "b"):
        run = PredictRun(model, images, tmp_path / name, mpp=0.5)
        runs.append(predict_cores(run, _config()))
    a, b = runs
    assert [r.to_json() for r in a] == [r.to_json() for r in b]
    for r in a:
        assert r.method == "ours" and r.proportion_kind == "masked ratio"
        assert 0.0 <= r.proportion <= 1.0
        assert r.interval in Config().intervals.build().names
        assert r.tumour_cells == r.cells > 0  # the fixture's stage 1 calls every cell tumour
        for suffix in (".tps.json", ".figure.png", ".cells.geojson", ".mask.geojson"):
            assert (tmp_path / "a" / f"{r.name}{suffix}").is_file()
        from maskllp.classes import RegionClass
        from maskllp.io.annotations import read_annotations

        regions = read_annotations(tmp_path / "a" / f"{r.name}.mask.geojson").regions  # QuPath reads it back
        assert [g.cls for g in regions] == [RegionClass.TUMOUR] and regions[0].geometry.area > 0
        saved = json.loads((tmp_path / "a" / f"{r.name}.tps.json").read_text())
        assert saved["proportion"] == pytest.approx(r.proportion)
    for name in ("predictions.csv", "report.html", "config.yaml"):
        assert (tmp_path / "a" / name).is_file()
    rows = (tmp_path / "a" / "predictions.csv").read_text().splitlines()
    assert len(rows) == 1 + len(images)


def test_a_folder_of_images_is_predicted_image_by_image(tmp_path, cohort_csv, stage1_dir, random_model):
    model = random_model(tmp_path, stage1_dir)
    rows = predict_cores(PredictRun(model, [cohort_csv.parent / "cores"], tmp_path / "o", mpp=0.5), _config())
    assert [r.name for r in rows] == [f"core{i:02d}" for i in range(12)]


def test_no_tumour_cell_gives_undefined_not_zero(tmp_path, cohort_csv, stage1_dir, random_model):
    cfg = json.loads((stage1_dir / "config.json").read_text())
    cfg["mask"]["tumour_threshold"] = 1.0  # no score exceeds it: no tumour cell anywhere
    (stage1_dir / "config.json").write_text(json.dumps(cfg))
    model = random_model(tmp_path, stage1_dir)
    image = sorted((cohort_csv.parent / "cores").glob("*.png"))[0]
    result = predict_cores(PredictRun(model, [image], tmp_path / "out", mpp=0.5), _config())[0]
    assert result.proportion is None and result.interval is None
    assert result.tumour_cells == 0
    assert "undefined" in result.note
    row = next(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    assert row["proportion"] == "" and row["interval"] == "" and row["percent"] == ""  # empty, not 0


def test_manifest_input_carries_labels_into_the_report(tmp_path, cohort_csv, stage1_dir, random_model):
    model = random_model(tmp_path, stage1_dir, "class")
    results = predict_cores(PredictRun(model, [cohort_csv], tmp_path / "out"), _config())
    assert len(results) == 12
    assert all(r.label for r in results)
    assert all(r.proportion_kind == "interval midpoint" for r in results)
    assert "Agreement with the labels (12 labelled cores)" in (tmp_path / "out" / "report.html").read_text()


def test_det_model_counts_cells(tmp_path, cohort_csv, stage1_dir):
    predictor = Predictor.load(stage1_dir)
    assert predictor.method.name == "det"
    image = sorted((cohort_csv.parent / "cores").glob("*.png"))[0]
    result, evidence, cells = predictor.predict(image, mpp=0.5)
    assert result.proportion_kind == "cell count"
    assert result.s_p + result.s_n == result.tumour_cells
    assert evidence.image is None and cells is not None
    # a counted TPS carries its 90 % range from the cells' probabilities (ours-cells the same way)
    assert 0.0 <= result.proportion_low <= result.proportion_high <= 1.0
    assert "proportion_low" in result.to_json()


def test_mask_method_without_stage1_is_refused_in_one_line(tmp_path, cohort_csv, stage1_dir, run_cli,
        random_model):
    model = random_model(tmp_path, stage1_dir, with_stage1=False)
    image = sorted((cohort_csv.parent / "cores").glob("*.png"))[0]
    code, out, err = run_cli("predict", model, image, "--out", tmp_path / "o")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "give --stage1" in err
    assert not (tmp_path / "o").exists()


def test_unreadable_image_stops_before_any_output(tmp_path, cohort_csv, stage1_dir, fixtures_dir,
        random_model):
    model = random_model(tmp_path, stage1_dir)
    good = sorted((cohort_csv.parent / "cores").glob("*.png"))[0]
    with pytest.raises(ProblemList) as err:
        predict_cores(PredictRun(model, [good, fixtures_dir / "truncated.png"], tmp_path / "o"), _config())
    assert "truncated.png" in str(err.value)
    assert not (tmp_path / "o").exists()


def test_maps_and_mask_in_the_evidence_match_the_input(tmp_path, cohort_csv, stage1_dir, random_model):
    predictor = Predictor.load(random_model(tmp_path, stage1_dir))
    image = sorted((cohort_csv.parent / "cores").glob("*.png"))[0]
    result, evidence, _ = predictor.predict(image, mpp=0.5)
    assert evidence.image.shape == (64, 64, 3) and evidence.mask.shape == (64, 64)
    assert evidence.maps.shape == (2, 8, 8) and np.all(evidence.maps >= 0)
    # the cores are 48 x 64: the square's padding rows are white and outside the mask
    assert np.all(evidence.image[:8] == 255) and not evidence.mask[:8].any()


@pytest.mark.parametrize("name", ["ours-cells", "ours-cells-cnn"])
def test_the_cells_geojson_recounts_to_the_reported_tps_and_shares_ids_with_detect(
        tmp_path, annotated_cohort_csv, stage1_dir, cv_config, name):
    from maskllp.inference.detect import DetectRun, detect_images
    from maskllp.intervals import PAPER_FIVE
    from maskllp.io.annotations import read_annotations
    from maskllp.io.manifest import read_cohort
    from maskllp.methods import FitSetup
    from maskllp.proportion.inputs import InputSpec
    from maskllp.training.inputs import ItemCache, Stage1MaskSource, prepare_items

    cv_config.proportion.cells.max_epochs = cv_config.proportion.cells.patch_max_epochs = 3
    entries = read_cohort(annotated_cohort_csv, PAPER_FIVE).entries
    source = Stage1MaskSource(stage1_dir, cells_root=tmp_path / "cache")
    items = prepare_items(entries, PAPER_FIVE, source, ItemCache(tmp_path / "cache", InputSpec("square", 64)))
    method = get_method(name)
    setup = FitSetup(source, stage1_dir, None, annotated_cohort_csv)
    fitted = method.fit(items, setup, cv_config, tmp_path / "w")
    assert fitted.model.reads_patches == (name == "ours-cells-cnn")
    model = fitted.save(tmp_path / "cells-model")
    image = entries[0].image
    result = predict_cores(PredictRun(model, [image], tmp_path / "p", mpp=0.5), _config())[0]
    cells = json.loads((tmp_path / "p" / f"{result.name}.cells.geojson").read_text())["features"]
    classes = [c["properties"]["classification"] for c in cells]
    names = [tuple(c.get("names", [c.get("name")])) for c in classes]
    n_pos, n_neg = names.count(("Tumor", "Positive")), names.count(("Tumor", "Negative"))
    assert n_pos + n_neg == result.tumour_cells > 0
    assert result.proportion == pytest.approx(n_pos / (n_pos + n_neg))  # QuPath recounts the TPS
    assert (result.positive_cells, result.negative_cells) == (n_pos, n_neg)  # the report's counts too
    report = (tmp_path / "p" / "report.html").read_text()
    assert (tmp_path / "p" / f"{result.name}.preview.png").is_file()
    assert (tmp_path / "p" / f"{result.name}.figure.png").is_file()  # the cell method's own figure
    assert f'href="{result.name}.figure.png"' in report
    assert report.count('src="data:image/jpeg;base64,') == 1  # a thumbnail, embedded: one file
    assert "http" not in report and "sortBy" in report  # sorts offline, asks nothing of the network
    assert f'<td data-key="{float(n_pos):.6f}">{n_pos}</td>' in report
    assert all("Positive probability" in c["properties"]["measurements"] for c in cells)
    points = read_annotations(tmp_path / "p" / f"{result.name}.cells.geojson").points
    assert (points.yx >= -0.5).all() and (points.yx[:, 0] < 48).all() and (points.yx[:, 1] < 64).all()
    detect_images(DetectRun(stage1_dir, [image], tmp_path / "d", mpp=0.5), _config())
    detected = json.loads((tmp_path / "d" / f"{result.name}.cells.geojson").read_text())["features"]
    assert sorted(c["id"] for c in detected) == sorted(c["id"] for c in cells)  # the same cells, the same ids
    # detect measures the stains too, whatever the classifier (this stage 1 is a CNN one)
    assert all("Nucleus: DAB OD mean" in c["properties"]["measurements"] for c in detected)


def test_the_report_links_only_files_that_exist(tmp_path, cohort_csv, stage1_dir, random_model):
    model = random_model(tmp_path, stage1_dir)
    image = sorted((cohort_csv.parent / "cores").glob("*.png"))[0]
    predict_cores(PredictRun(model, [image], tmp_path / "o", mpp=0.5, figures=False), _config())
    page = (tmp_path / "o" / "report.html").read_text()
    linked = re.findall(r'href="([^"]+)"', page)
    assert linked and all((tmp_path / "o" / h).is_file() for h in linked)
    assert not any(h.endswith(".figure.png") for h in linked)


def test_a_core_without_dab_and_with_few_tumour_cells_is_flagged(tmp_path, stage1_dir, ihc_rgb, random_model):
    from PIL import Image

    rng = np.random.default_rng(0)
    he = np.full((64, 64, 3), (235, 205, 225), np.uint8)  # eosin-pink background, hematoxylin-blue nuclei
    for y, x in rng.integers(6, 58, (20, 2)):
        he[y - 3: y + 3, x - 3: x + 3] = (80, 60, 160)
    Image.fromarray(he).save(tmp_path / "he.png")
    model = random_model(tmp_path, stage1_dir)
    result = predict_cores(PredictRun(model, [tmp_path / "he.png"], tmp_path / "o", mpp=0.5), _config())[0]
    assert result.flags is not None
    assert "no DAB signal" in result.flags and "fewer than 100 tumour cells" in result.flags
    assert "no DAB signal" in (tmp_path / "o" / "report.html").read_text()
    row = next(csv.DictReader((tmp_path / "o" / "predictions.csv").open()))
    assert "no DAB signal" in row["flags"]
    Image.fromarray(ihc_rgb[:128, :128]).save(tmp_path / "ihc.png")  # a real DAB stain is not flagged so
    ihc = predict_cores(PredictRun(model, [tmp_path / "ihc.png"], tmp_path / "o2", mpp=0.5), _config())[0]
    assert "no DAB signal" not in (ihc.flags or "")


TPS_TOLERANCE = 0.02
"""bf16 autocast at prediction time: the largest |TPS(bf16) - TPS(fp32)| accepted on a core (bf16
keeps 8 bits of mantissa, 2-3 significant digits per activation; the masked sums run in fp32)."""
OUTPUT_TOLERANCE = 0.02
"""Largest |bf16 - fp32| accepted on a stage-1 heatmap value or class probability (both in [0, 1])."""


def test_auto_resolves_to_fp32_where_bf16_is_emulated():
    cpu = torch.device("cpu")
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert resolve_inference_precision(cpu, "auto") == ("bf16" if native else "32")
    assert resolve_inference_precision(cpu, "32") == "32"
    with inference_autocast(cpu, "bf16"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with inference_autocast(cpu, "32"):
        assert not torch.is_autocast_enabled("cpu")


def test_bf16_stage1_outputs_are_within_tolerance_of_fp32(stage1_dir, ihc_rgb):
    from maskllp.backbones import rgb_to_tensor
    from maskllp.detection.model import Stage1Model

    model = Stage1Model.load(stage1_dir)
    x = rgb_to_tensor(ihc_rgb[:128, :128], model.device)
    yx = np.array([[20.0, 30.0], [64.0, 64.0], [100.0, 90.5]])
    with torch.no_grad():
        heat32, (probs32, _) = model.detector.heatmap(x), model._classify(x, yx)
    with torch.no_grad(), inference_autocast(model.device, "bf16"):
        heat16, (probs16, _) = model.detector.heatmap(x), model._classify(x, yx)
    assert heat16.dtype == probs16.dtype == np.float32
    assert np.abs(heat16 - heat32).max() <= OUTPUT_TOLERANCE
    assert np.abs(probs16 - probs32).max() <= OUTPUT_TOLERANCE


@pytest.mark.parametrize("method", ["ours", "ours-nomask", "prop"])
def test_bf16_stage2_proportion_is_within_tolerance_of_fp32(tmp_path, stage1_dir, ihc_rgb, method,
        random_model):
    from PIL import Image

    Image.fromarray(ihc_rgb[:128, :128]).save(tmp_path / "ihc.png")
    predictor = Predictor.load(random_model(tmp_path, stage1_dir, method))
    with open_image(tmp_path / "ihc.png", 0.5) as reader:
        cells = predictor.fitted.detect_cells(reader)  # one set of cells (one mask) for both
    fp32 = predictor.fitted.estimate(tmp_path / "ihc.png", 0.5, cells, want_maps=False).prediction
    with inference_autocast(torch.device("cpu"), "bf16"):
        estimate = predictor.fitted.estimate(tmp_path / "ihc.png", 0.5, cells, want_maps=True)
    bf16 = estimate.prediction
    assert estimate.maps is None or estimate.maps.dtype == np.float32  # the figure's maps, in fp32
    assert fp32.proportion is not None and bf16.proportion is not None
    assert abs(bf16.proportion - fp32.proportion) <= TPS_TOLERANCE
    assert isinstance(bf16.s_p, float) and bf16.s_p == pytest.approx(fp32.s_p, rel=0.05)


def test_nan_weights_are_an_error_naming_the_model_not_a_result(tmp_path, cohort_csv, stage1_dir, run_cli,
        random_model):
    from safetensors.torch import load_file, save_file

    model = random_model(tmp_path, stage1_dir)
    weights = model / "weights.safetensors"
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
             for k, v in load_file(weights).items()}
    save_file(state, weights)
    image = sorted((cohort_csv.parent / "cores").glob("*.png"))[0]
    code, out, err = run_cli("predict", model, image, "--mpp", "0.5", "--out", tmp_path / "o")
    assert code == 2 and str(model) in err and "NaN or infinite" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_a_core_stained_unlike_the_training_cores_is_flagged(tmp_path, stage1_dir, stained_pixels,
                                                             random_model):
    from PIL import Image

    from maskllp.inference.stain_check import STAIN_RANGE_FILE, core_stain_vectors, save_stain_range

    def core(name, h_vec, seed):  # 96 x 96 px at 1 um/px: read as it is
        rgb = stained_pixels(h_vec, DAB, 96 * 96, seed=seed).reshape(96, 96, 3)
        Image.fromarray(rgb).save(tmp_path / name)
        return tmp_path / name

    model = random_model(tmp_path, stage1_dir)
    stains = []
    for seed in range(3):
        with open_image(core(f"train{seed}.png", LAB_A, seed), 1.0) as reader:
            stains.append(core_stain_vectors(reader))
    assert save_stain_range(model, stains) is not None and (model / STAIN_RANGE_FILE).is_file()
    same, other = core("same-lab.png", LAB_A, 7), core("other-lab.png", LAB_B, 7)
    run = PredictRun(model, [same, other], tmp_path / "o", mpp=1.0, figures=False)
    results = predict_cores(run, _config())
    assert "stain outside the training range" not in (results[0].flags or "")
    assert re.search(r"stain outside the training range: hematoxylin colour 1[0-9]\.[0-9] deg",
                     results[1].flags or "")  # the two labs' vectors are 16 deg apart
    (model / STAIN_RANGE_FILE).write_text('{"hematoxylin": [1, 2]}')
    with pytest.raises(Exception, match="stain-range.json.*is not a stain range") as info:
        Predictor.load(model)
    assert "Traceback" not in str(info.value)


LAB_A, LAB_B = (0.768, 0.593, 0.244), (0.549, 0.776, 0.311)
"""Hematoxylin vectors of one Ki-67 slide scanned twice (../shared/data, Macenko's estimate)."""
DAB = (0.37, 0.57, 0.73)


def test_a_pixel_method_reports_its_conformal_range_and_views_average(tmp_path, cohort_csv, stage1_dir,
                                                                         random_model):
    """A map model with a margin: predict reports the TPS -+ it; ``[inference] views = 8`` runs
    stage 2 on the 8 flips and rotations of the core (an estimate of its own)."""
    from maskllp.proportion.model import load_proportion_model

    model = random_model(tmp_path, stage1_dir)
    image = sorted((cohort_csv.parent / "cores").glob("*.png"))[0]
    plain = Predictor.load(model).predict(image, mpp=0.5, want_maps=False)[0]
    assert plain.proportion_low is None and plain.proportion_high is None  # a folder without a margin
    stage2 = load_proportion_model(model)
    stage2.range_margin = 0.05
    margin_model = stage2.save(tmp_path / "with-margin")
    row = Predictor.load(margin_model, stage1_dir=stage1_dir).predict(image, mpp=0.5, want_maps=False)[0]
    assert row.proportion == plain.proportion
    assert row.proportion_low == pytest.approx(max(0.0, row.proportion - 0.05))
    assert row.proportion_high == pytest.approx(min(1.0, row.proportion + 0.05))
    cfg = _config()
    cfg.inference.views = 8
    viewed = predict_cores(PredictRun(model, [image], tmp_path / "out", mpp=0.5, figures=False), cfg)[0]
    direct = Predictor.load(model, views=8).predict(image, mpp=0.5, want_maps=False)[0]
    assert viewed.proportion == pytest.approx(direct.proportion, abs=1e-6)
    assert viewed.proportion != plain.proportion


@pytest.mark.parametrize("figures", [True, False])
def test_a_map_method_calls_each_cell_from_its_maps_with_or_without_figures(
        tmp_path, cohort_csv, stage1_dir, random_model, figures):
    model = random_model(tmp_path, stage1_dir)
    image = sorted((cohort_csv.parent / "cores").glob("*.png"))[0]
    result = predict_cores(PredictRun(model, [image], tmp_path / "o", mpp=0.5, figures=figures), _config())[0]
    data = json.loads((tmp_path / "o" / f"{result.name}.cells.geojson").read_text())
    classes = [c["properties"]["classification"] for c in data["features"]]
    names = [tuple(c.get("names", [c.get("name")])) for c in classes]
    stained = names.count(("Tumor", "Positive")) + names.count(("Tumor", "Negative"))
    assert result.tumour_cells > 0 and stained == result.tumour_cells  # no plain "Tumor" left
    assert "not this count" in json.dumps(data)  # the file says its count is not the TPS


def _recount_script():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "geojson_recount.py"
    spec = importlib.util.spec_from_file_location("geojson_recount", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_recount_script_checks_counted_files_and_only_shows_map_ones(tmp_path, capsys) -> None:
    script = _recount_script()
    note = {"Positivity": "each tumour cell's call by the cell-level method; counting them gives the TPS"}

    def cell(names):
        return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1.0, 2.0]},
                "properties": {"objectType": "detection", "classification": {"names": names},
                               "metadata": note}}

    features = [cell(["Tumor", "Positive"]), cell(["Tumor", "Negative"]), cell(["Tumor", "Negative"]),
                cell(["Stroma"])]
    (tmp_path / "a.cells.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    (tmp_path / "a.tps.json").write_text(json.dumps({"name": "a", "proportion": 1 / 3}))
    assert script.main([str(tmp_path)]) == 0 and "agrees" in capsys.readouterr().out
    (tmp_path / "a.tps.json").write_text(json.dumps({"name": "a", "proportion": 0.5}))
    assert script.main([str(tmp_path)]) == 1 and "DISAGREES" in capsys.readouterr().out
    note["Positivity"] = "F_p / (F_p + F_n) of the map under the cell; the TPS is the masked sums' ratio"
    (tmp_path / "a.cells.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    assert script.main([str(tmp_path)]) == 0 and "not checked" in capsys.readouterr().out
    # a run that wrote its own class names ([classes] write_*, kept in its config.yaml) is counted by them
    from maskllp.classes import ClassMapping
    from maskllp.config import Config, save_config

    own = ClassMapping(tumour=["Tumor", "Carcinoma"], write_positive="Carcinoma: Positive")
    save_config(Config(classes=own), tmp_path / "config.yaml")
    note["Positivity"] = "each tumour cell's call by the cell-level method; counting them gives the TPS"
    features[:2] = [cell(["Carcinoma", "Positive"])] * 2  # 2 positive of 3 tumour cells by the run's names
    (tmp_path / "a.cells.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    (tmp_path / "a.tps.json").write_text(json.dumps({"name": "a", "proportion": 2 / 3}))
    assert script.main([str(tmp_path)]) == 0 and "agrees" in capsys.readouterr().out
    (tmp_path / "config.yaml").unlink()  # QuPath's names: no positive cell, 0 of 1
    assert script.main([str(tmp_path)]) == 1
