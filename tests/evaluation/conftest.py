"""A tiny cohort of PNG cores with a manifest, and a random-weight three-class stage-1 model folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from maskllp.config import Config

# (label, patient) of 12 cores: every interval, two or three cores per patient
LABELS = ["0.005", "0-1 %", "1-25 %", "0.12", "25-50 %", "0.4", "50-75 %", "0.6", "75-100 %", "0.9",
          "1-25 %", "0.3"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def cohort_csv(tmp_path):
    """12 small PNG cores (48 x 64) with a manifest: patient, label (intervals and exact), mpp."""
    rng = np.random.default_rng(1)
    lines = ["image,patient,label,mpp"]
    (tmp_path / "cores").mkdir()
    for i, label in enumerate(LABELS):
        rgb = rng.integers(60, 250, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(tmp_path / "cores" / f"core{i:02d}.png")
        lines.append(f"cores/core{i:02d}.png,P{i // 2},{label},0.5")
    path = tmp_path / "cohort.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def annotated_cohort_csv(cohort_csv):
    """The tiny cohort with point annotations (positive, negative tumour, stroma) on every core."""
    rng = np.random.default_rng(2)
    lines = cohort_csv.read_text().splitlines()
    out = [lines[0] + ",points"]
    for i, line in enumerate(lines[1:]):
        points = cohort_csv.parent / "cores" / f"core{i:02d}_points.csv"
        rows = [f"{x:.1f},{y:.1f},{c}" for x, y, c in zip(rng.uniform(4, 60, 9), rng.uniform(4, 44, 9),
                                                          ["Positive", "Negative", "Stroma"] * 3,
                                                          strict=True)]
        points.write_text("x,y,class\n" + "\n".join(rows) + "\n")
        out.append(f"{line},cores/{points.name}")
    cohort_csv.write_text("\n".join(out) + "\n")
    return cohort_csv


@pytest.fixture
def stage1_dir(tmp_path):
    """A stage-1 folder with random networks: every local maximum is a cell, every cell is tumour."""
    from maskllp.detection.config import ClassifierConfig, DetectorConfig, MaskConfig, TilingConfig
    from maskllp.inference.stage1 import DetectorModel, Stage1Model, build_classifier, build_unet

    torch.manual_seed(0)
    det_cfg = DetectorConfig(base_channels=4, depth=2)
    cls_cfg = ClassifierConfig(backbone="resnet18", feature_layer="layer1", classes="three")
    model = Stage1Model(DetectorModel(build_unet(det_cfg), det_cfg, 0.5, -1e9, 3.0),
                        build_classifier(cls_cfg), cls_cfg, MaskConfig(tumour_threshold=0.0),
                        TilingConfig(tile=64, overlap=16))
    return model.save(tmp_path / "stage1")


@pytest.fixture
def cv_config() -> Config:
    cfg = Config()
    cfg.proportion.input_size = 64
    cfg.proportion.batch_size = 4
    cfg.proportion.max_steps = 2
    cfg.trainer.accelerator = "cpu"
    cfg.trainer.devices = "1"
    cfg.trainer.progress_bar = False
    cfg.cv.folds = 2
    return cfg
