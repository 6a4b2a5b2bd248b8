"""The stage-1 commands end to end on two tiny hand-drawn cores (random-ish weights, a few steps)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from maskllp.io.annotations import PointAnnotations, read_annotations, write_point_annotations_geojson
from maskllp.io.images import open_image, write_image
from maskllp.io.manifest import write_cohort

TINY = """
[detector]
base_channels = 4
depth = 3
crop = 32
batch_size = 2
steps_per_epoch = 2
max_epochs = 1
thresholds = [-100.0, 0.3]
min_distance_um = [3.0]

[classifier]
backbone = "resnet18"
feature_layer = "layer1"
crop = 32
batch_size = 2
steps_per_epoch = 2
max_epochs = 1

[tiling]
tile = 48
overlap = 32

[trainer]
accelerator = "cpu"
devices = "1"
progress_bar = false
save_checkpoints = true
"""


@pytest.fixture
def tiny_cohort(tmp_path, make_core):
    rows = []
    for k in range(2):
        img, yx, classes = make_core(64, seed=k)
        write_image(tmp_path / f"core{k}.png", img, mpp=0.5)
        write_point_annotations_geojson(tmp_path / f"core{k}.points.geojson", PointAnnotations(yx, classes))
        rows.append({"image": f"core{k}.png", "points": f"core{k}.points.geojson"})
    write_cohort(tmp_path / "cohort.csv", rows)
    (tmp_path / "tiny.toml").write_text(TINY)
    return tmp_path


def test_train_detect_evaluate(run_cli, tiny_cohort):
    d = tiny_cohort
    cfg = d / "tiny.toml"
    code, out, err = run_cli("train", "detector", d / "cohort.csv", "--out", d / "det",
                          "--config", cfg)
    assert code in (0, None), err
    assert "peak threshold" in out and (d / "det" / "config.yaml").is_file()
    assert (d / "det" / "checkpoints" / "last.ckpt").is_file()
    assert (d / "det" / "logs" / "metrics.csv").is_file()
    assert json.loads((d / "det" / "config.json").read_text())["kind"] == "detector"

    code, out, err = run_cli("train", "tumour-classifier", d / "cohort.csv", "--detector",
                          d / "det", "--out", d / "s1", "--config", cfg)
    assert code in (0, None), err
    config = json.loads((d / "s1" / "config.json").read_text())
    assert config["kind"] == "stage1" and config["mpp"] == 0.5 and "classifier" in config

    code, out, err = run_cli("detect", d / "s1", d / "core0.png", d / "core1.png", "--out",
                          d / "found", "--mask-downsample", "2", "--config", cfg)
    assert code in (0, None), err
    found = d / "found"
    names = {p.name for p in found.iterdir()}
    expected = {"core0.cells.geojson", "core0.mask.png", "core0.preview.png", "summary.json", "config.yaml"}
    assert expected <= names
    summary = json.loads((found / "summary.json").read_text())["images"][0]
    cells = read_annotations(found / "core0.cells.geojson").points
    assert len(cells) == summary["cells"] > 0
    with Image.open(found / "core0.mask.png") as im:
        mask = np.asarray(im)
    assert mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 255}
    with open_image(found / "core0.preview.png") as preview:
        assert preview.shape == (64, 64)

    code, out, err = run_cli("evaluate-detection", d / "s1", d / "cohort.csv", "--out",
                          d / "eval.json", "--config", cfg)
    assert code in (0, None), err
    report = json.loads((d / "eval.json").read_text())
    assert report["overall"]["cores"] == 2 and "detection precision" in out
    assert 0 <= report["overall"]["detection"]["recall"] <= 1


def test_a_stage1_folder_records_the_stains_of_the_cores_it_learnt_from(run_cli, tmp_path, stained_pixels):
    """``train tumour-classifier`` writes ``stain-range.json``: a three-class folder is Det's model, and
    ``predict`` flags Det's cores stained unlike these as it flags a stage-2 model's."""
    from maskllp.classes import CellClass

    rows = []
    for k in range(2):
        rgb = stained_pixels((0.65, 0.70, 0.29), (0.27, 0.57, 0.78), 64 * 64, seed=k).reshape(64, 64, 3)
        write_image(tmp_path / f"c{k}.png", rgb, mpp=1.0)
        points = PointAnnotations(np.array([[10.0, 12.0], [40.0, 30.0]]),
                                  np.array([CellClass.POSITIVE_TUMOUR, CellClass.NON_TUMOUR], np.int8))
        write_point_annotations_geojson(tmp_path / f"c{k}.points.geojson", points)
        rows.append({"image": f"c{k}.png", "points": f"c{k}.points.geojson"})
    write_cohort(tmp_path / "cohort.csv", rows)
    (tmp_path / "tiny.toml").write_text(TINY)
    for args in (("detector", tmp_path / "cohort.csv", "--out", tmp_path / "det"),
                 ("tumour-classifier", tmp_path / "cohort.csv", "--detector", tmp_path / "det", "--out",
                  tmp_path / "s1")):
        code, _, err = run_cli("train", *args, "--config", tmp_path / "tiny.toml")
        assert code in (0, None), err
    recorded = json.loads((tmp_path / "s1" / "stain-range.json").read_text())
    assert recorded["cores"] == 2 and recorded["hematoxylin_max_deg"] < 2.0


def test_user_errors_are_one_line(run_cli, tiny_cohort):
    d = tiny_cohort
    write_cohort(d / "nopoints.csv", [{"image": str(d / "core0.png")}])
    code, out, err = run_cli("train", "detector", d / "nopoints.csv", "--out", d / "det")
    assert code == 2 and err.count("\n") == 1 and "no core has point annotations" in err
    assert not (d / "det").exists()
    code, out, err = run_cli("detect", d / "missing", d / "core0.png", "--out", d / "x")
    assert code == 2 and "model folder not found" in err and not (d / "x").exists()


@pytest.fixture
def random_stage1(tmp_path):
    """A stage-1 folder with tiny randomly initialised networks (no training)."""
    import torch

    from maskllp.config.detection import ClassifierConfig, DetectorConfig, TilingConfig
    from maskllp.detection.model import DetectorModel, Stage1Model, build_classifier, build_unet

    torch.manual_seed(0)
    det_cfg = DetectorConfig(base_channels=4, depth=3)
    cls_cfg = ClassifierConfig(kind="cnn", backbone="resnet18", feature_layer="layer1")
    detector = DetectorModel(build_unet(det_cfg), det_cfg, 0.5, peak_threshold=-100.0, min_distance_um=4.0)
    model = Stage1Model(detector, build_classifier(cls_cfg), cls_cfg, tiling=TilingConfig(64, 32))
    return model.save(tmp_path / "random-stage1")


def test_detect_needs_a_pixel_size(run_cli, tmp_path, random_stage1, make_core):
    img, _, _ = make_core(48)
    write_image(tmp_path / "nompp.png", img)
    code, out, err = run_cli("detect", random_stage1, tmp_path / "nompp.png", "--out",
                          tmp_path / "out")
    assert code == 2 and "nompp.png" in err and "pixel size unknown" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    code, out, err = run_cli("detect", random_stage1, tmp_path / "nompp.png", "--out",
                          tmp_path / "out", "--mpp", "0.25")
    assert code in (0, None), err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["images"][0]
    assert summary["mpp"] == 0.25 and summary["mask_shape"] == [48, 48]


def test_detect_takes_a_folder_of_images_or_a_manifest_with_pixel_sizes(run_cli, tmp_path, random_stage1,
                                                                         make_core):
    folder = tmp_path / "cores"
    folder.mkdir()
    for name in ("b", "a"):
        write_image(folder / f"{name}.png", make_core(48)[0])
    (folder / "notes.txt").write_text("not an image\n")
    code, out, err = run_cli("detect", random_stage1, folder, "--out", tmp_path / "o1", "--mpp", "0.5")
    assert code in (0, None), err
    names = [i["name"] for i in json.loads((tmp_path / "o1" / "summary.json").read_text())["images"]]
    assert names == ["a", "b"]  # the images of the folder, sorted; the text file left alone
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("image,patient,label,mpp\ncores/a.png,P1,0-1 %,0.25\ncores/b.png,P2,0-1 %,0.5\n")
    code, out, err = run_cli("detect", random_stage1, manifest, "--out", tmp_path / "o2")
    assert code in (0, None), err
    images = json.loads((tmp_path / "o2" / "summary.json").read_text())["images"]
    assert [(i["name"], i["mpp"]) for i in images] == [("a", 0.25), ("b", 0.5)]
    (tmp_path / "empty").mkdir()
    code, out, err = run_cli("detect", random_stage1, tmp_path / "empty", "--out", tmp_path / "o3")
    assert code == 2 and "without image files" in err and err.count("\n") == 1
    assert not (tmp_path / "o3").exists()


def test_evaluate_against_synthetic_truth(run_cli, tmp_path, random_stage1):
    from maskllp.config.synth import SynthConfig
    from maskllp.synth import generate_cohort

    manifest = generate_cohort(tmp_path / "syn", 2, SynthConfig(size=128, seed=3))
    code, out, err = run_cli("evaluate-detection", random_stage1, manifest, "--truth",
                          tmp_path / "syn" / "truth.csv", "--out", tmp_path / "eval.json")
    assert code in (0, None), err
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["overall"]["cores"] == 2 and report["skipped"] == []
    from maskllp.synth.truth import read_truth

    truth = read_truth(tmp_path / "syn" / "truth.csv")
    for core in report["cores"]:
        t, d = truth[core["name"]], core["detection"]
        assert d["tp"] + d["fn"] == t.n_positive + t.n_negative + t.n_non_tumour > 0
    assert report["config"]["mask"]["alpha_um"] == 5.0


def test_suggest_writes_unclassified_points_of_unlabelled_cells_for_qupath(run_cli, tiny_cohort,
                                                                          random_stage1):
    import csv

    from maskllp.config import Config
    from maskllp.io.manifest import read_cohort
    from maskllp.training.inputs import Stage1MaskSource
    from maskllp.training.stage1 import cell_labels, images_from_cohort

    d = tiny_cohort
    write_cohort(d / "half.csv", [{"image": "core0.png", "points": "core0.points.geojson", "mpp": 0.5},
                                  {"image": "core1.png", "mpp": 0.5}])
    code, out, err = run_cli("suggest", random_stage1, d / "half.csv", "--out", d / "sug", "--n", "10000",
                             "--strategy", "uncertain")
    assert code in (0, None), err
    assert "cells suggested in 2 cores" in out
    rows = list(csv.DictReader(open(d / "sug" / "suggestions.csv")))
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    margins = [abs(float(r["tumour_score"]) - 0.5) for r in rows]
    assert margins == sorted(margins)
    # every detected cell is suggested except those the points of core0 label
    config = Config()
    cohort = read_cohort(d / "half.csv", config.intervals.build())
    source = Stage1MaskSource(random_stage1)
    cells = [source.cells(e) for e in cohort.entries]
    image = images_from_cohort(cohort, config)[0]
    taken = int((cell_labels(cells[0].yx, image, "tumour", config.detector.match_radius_um / 0.5) >= 0).sum())
    assert taken > 0 and len(rows) == len(cells[0]) + len(cells[1]) - taken
    # QuPath reads the points unclassified; once a user classifies them they are annotations
    for name in {r["points_file"] for r in rows}:
        path = d / "sug" / name
        n = sum(r["points_file"] == name for r in rows)
        ann = read_annotations(path)
        assert len(ann.points) == 0 and ann.skipped_points == n
        data = json.loads(path.read_text())
        for f in data["features"]:
            assert f["geometry"]["type"] == "Point" and f["properties"]["name"].startswith("suggestion ")
            f["properties"]["classification"] = {"name": "Tumor", "color": [200, 0, 0]}
        path.write_text(json.dumps(data))
        assert len(read_annotations(path).points) == n
    # named in the manifest's partial_points column, the classified cells are not suggested again
    core1 = next(r["points_file"] for r in rows if r["image"].endswith("core1.png"))
    n1 = sum(r["points_file"] == core1 for r in rows)
    write_cohort(d / "half.csv", [{"image": "core0.png", "points": "core0.points.geojson", "mpp": 0.5},
                                  {"image": "core1.png", "mpp": 0.5,
                                   "partial_points": str(d / "sug" / core1)}])
    code, out, err = run_cli("suggest", random_stage1, d / "half.csv", "--out", d / "sug2", "--n", "10000")
    assert code in (0, None), err
    again = list(csv.DictReader(open(d / "sug2" / "suggestions.csv")))
    assert len(again) == len(rows) - n1 and not any(r["image"].endswith("core1.png") for r in again)


def test_suggest_refuses_bad_requests_in_one_line(run_cli, tiny_cohort, random_stage1):
    d = tiny_cohort
    for args, message in ((("--n", "0"), "--n must be at least 1"),
                          (("--strategy", "best"), "unknown strategy")):
        code, out, err = run_cli("suggest", random_stage1, d / "cohort.csv", "--out", d / "sug", *args)
        assert code == 2 and err.count("\n") == 1 and message in err, err
        assert not (d / "sug").exists()
