"""Shared test fixtures: small, generic, CPU-only, no downloads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("OMP_NUM_THREADS", "1")

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The folder of hand-made test files (see tests/fixtures/README.md)."""
    return FIXTURES


@pytest.fixture(scope="session")
def ihc_rgb() -> np.ndarray:
    """The real IHC image scikit-image ships (512 x 512 x 3 uint8, DAB + haematoxylin)."""
    from skimage.data import immunohistochemistry

    return immunohistochemistry()


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, fresh for every test."""
    return np.random.default_rng(1234)


@pytest.fixture
def random_rgb(rng: np.random.Generator) -> np.ndarray:
    """A random (70, 90, 3) uint8 image (odd sizes on purpose)."""
    return rng.integers(0, 256, size=(70, 90, 3), dtype=np.uint8)


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
def stage1_dir(tmp_path):
    """A three-class stage-1 folder with random networks: every local maximum is a cell, every cell is
    tumour."""
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
def run_cli(monkeypatch, capsys):
    """Run ``maskllp ARGS...`` through the console entry point; returns (exit code, stdout, stderr)."""
    import sys

    from maskllp.cli import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["maskllp", *map(str, args)])
        with pytest.raises(SystemExit) as info:
            main()
        out = capsys.readouterr()
        return info.value.code, out.out, out.err

    return run
