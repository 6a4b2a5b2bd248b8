"""The stage-1 commands end to end on two tiny hand-drawn cores (random-ish weights, a few steps)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from maskllp.cli import main
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
"""


def _run(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["maskllp", *map(str, args)])
    with pytest.raises(SystemExit) as info:
        main()
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


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


def test_train_detect_evaluate(monkeypatch, capsys, tiny_cohort):
    d = tiny_cohort
    cfg = d / "tiny.toml"
    code, out, err = _run(monkeypatch, capsys, "train", "detector", d / "cohort.csv", "--out", d / "det",
                          "--config", cfg)
    assert code in (0, None), err
    assert "peak threshold" in out and (d / "det" / "config.yaml").is_file()
    assert json.loads((d / "det" / "config.json").read_text())["kind"] == "detector"

    code, out, err = _run(monkeypatch, capsys, "train", "tumour-classifier", d / "cohort.csv", "--detector",
                          d / "det", "--out", d / "s1", "--config", cfg)
    assert code in (0, None), err
    config = json.loads((d / "s1" / "config.json").read_text())
    assert config["kind"] == "stage1" and config["mpp"] == 0.5 and "classifier" in config

    code, out, err = _run(monkeypatch, capsys, "detect", d / "s1", d / "core0.png", d / "core1.png", "--out",
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

    code, out, err = _run(monkeypatch, capsys, "evaluate-detection", d / "s1", d / "cohort.csv", "--out",
                          d / "eval.json", "--config", cfg)
    assert code in (0, None), err
    report = json.loads((d / "eval.json").read_text())
    assert report["overall"]["cores"] == 2 and "detection precision" in out
    assert 0 <= report["overall"]["detection"]["recall"] <= 1


def test_user_errors_are_one_line(monkeypatch, capsys, tiny_cohort):
    d = tiny_cohort
    write_cohort(d / "nopoints.csv", [{"image": str(d / "core0.png")}])
    code, out, err = _run(monkeypatch, capsys, "train", "detector", d / "nopoints.csv", "--out", d / "det")
    assert code == 2 and err.count("\n") == 1 and "no core has point annotations" in err
    assert not (d / "det").exists()
    code, out, err = _run(monkeypatch, capsys, "detect", d / "missing", d / "core0.png", "--out", d / "x")
    assert code == 2 and "model folder not found" in err and not (d / "x").exists()
