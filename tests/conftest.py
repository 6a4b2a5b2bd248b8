"""Shared test fixtures: small, generic, CPU-only, no downloads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskllp.classes import CellClass
from maskllp.config import Config
from maskllp.intervals import PAPER_FIVE
from maskllp.proportion.inputs import Stage2Item

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


@pytest.fixture(autouse=True)
def _default_limits():
    """Every test starts and ends with the default input budgets (a CLI run puts its config's in force)."""
    from maskllp.io.limits import Limits, use_limits

    use_limits(Limits())
    yield
    use_limits(Limits())


@pytest.fixture
def huge_header_tiff(tmp_path) -> Path:
    """A valid tiled TIFF of ~1 KB whose header declares 100 000 x 100 000 RGB pixels at 0.5 um/px."""
    return write_huge_header_tiff(tmp_path / "huge.tif")


def write_huge_header_tiff(path: Path) -> Path:
    """Write :func:`huge_header_tiff`'s file at ``path`` (a 512 px image with its size tags rewritten;
    the missing tiles read as empty)."""
    import struct

    import tifffile

    tifffile.imwrite(path, np.full((512, 512, 3), 200, np.uint8), tile=(256, 256), photometric="rgb",
                     compression="zlib", resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
    raw = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        offsets = [tif.pages[0].tags[name].valueoffset for name in ("ImageWidth", "ImageLength")]
    for off in offsets:
        raw[off: off + 4] = struct.pack("<I", 100_000)
    path.write_bytes(bytes(raw))
    return path


def write_tiny_cohort(folder: Path) -> Path:
    """12 small PNG cores (48 x 64) under ``folder/cores`` with ``folder/cohort.csv``: patient, label
    (intervals and exact), mpp."""
    rng = np.random.default_rng(1)
    lines = ["image,patient,label,mpp"]
    (folder / "cores").mkdir(parents=True)
    for i, label in enumerate(LABELS):
        rgb = rng.integers(60, 250, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(folder / "cores" / f"core{i:02d}.png")
        lines.append(f"cores/core{i:02d}.png,P{i // 2},{label},0.5")
    path = folder / "cohort.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def cohort_csv(tmp_path):
    """12 small PNG cores (48 x 64) with a manifest: patient, label (intervals and exact), mpp."""
    return write_tiny_cohort(tmp_path)


def write_random_stage1(path: Path) -> Path:
    """A three-class stage-1 folder at ``path`` with random networks: every local maximum is a cell,
    every cell is tumour."""
    from maskllp.config.detection import ClassifierConfig, DetectorConfig, MaskConfig, TilingConfig
    from maskllp.detection.model import DetectorModel, Stage1Model, build_classifier, build_unet

    torch.manual_seed(0)
    det_cfg = DetectorConfig(base_channels=4, depth=2)
    cls_cfg = ClassifierConfig(kind="cnn", backbone="resnet18", feature_layer="layer1", classes="three")
    model = Stage1Model(DetectorModel(build_unet(det_cfg), det_cfg, 0.5, -1e9, 3.0),
                        build_classifier(cls_cfg), cls_cfg, MaskConfig(tumour_threshold=0.0),
                        TilingConfig(tile=64, overlap=16))
    return model.save(path)


@pytest.fixture
def stage1_dir(tmp_path):
    """A three-class stage-1 folder with random networks: every local maximum is a cell, every cell is
    tumour."""
    return write_random_stage1(tmp_path / "stage1")


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


# ------------------------------------------------------------------ stage 1: hand-drawn cores
def draw_cells(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(size, size, 3) uint8 image, (N, 2) cell centres, (N,) classes: big dark-blue tumour cells on
    the left half, small brown non-tumour cells on the right half, on a grid with jitter."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 235, np.float32)
    yy, xx = np.mgrid[:size, :size]
    centres, classes = [], []
    for y in range(6, size - 4, 12):
        for x in range(6, size - 4, 12):
            cy, cx = y + rng.uniform(-2, 2), x + rng.uniform(-2, 2)
            tumour = cx < size / 2
            r = 4.0 if tumour else 2.5
            colour = (70, 60, 150) if tumour else (150, 100, 60)
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            img[inside] = colour
            centres.append((cy, cx))
            classes.append(CellClass.NEGATIVE_TUMOUR if tumour else CellClass.NON_TUMOUR)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), np.array(centres), np.array(classes, np.int8)


@pytest.fixture
def make_core():
    """The :func:`draw_cells` factory."""
    return draw_cells


# ------------------------------------------------------------------ stage 2: tiny items and configs
SIZE = 64


def tiny_items(n: int = 10, size: int = SIZE, seed: int = 0) -> list[Stage2Item]:
    """``n`` random cores, intervals cycling 0..4, a square tumour mask (the last core's mask empty)."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        k = i % 5
        mask = np.zeros((size, size), bool)
        if i != n - 1:
            mask[8:40, 8 + i: 40 + i] = True
        items.append(Stage2Item(f"core{i}.png", f"p{i // 2}", k, float(PAPER_FIVE.midpoints[k]), None,
                                rng.integers(0, 256, (size, size, 3), dtype=np.uint8), mask))
    return items


def tiny_config(size: int = SIZE) -> Config:
    cfg = Config()
    cfg.proportion.input_size = size
    cfg.proportion.batch_size = 4
    cfg.proportion.max_steps = 2
    cfg.trainer.accelerator = "cpu"
    cfg.trainer.devices = "1"
    cfg.trainer.progress_bar = False
    return cfg


@pytest.fixture
def items() -> list[Stage2Item]:
    return tiny_items()


@pytest.fixture
def cpu_config() -> Config:
    return tiny_config()


# ------------------------------------------------------------------ cross-validation
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
def cv_config() -> Config:
    cfg = Config()
    cfg.proportion.input_size = 64
    cfg.proportion.batch_size = 4
    cfg.proportion.max_steps = 2
    cfg.trainer.accelerator = "cpu"
    cfg.trainer.devices = "1"
    cfg.trainer.progress_bar = False
    cfg.proportion.mpp = 0.5  # the tiny cores' own pixel size: 48 x 64 px inputs
    cfg.cv.folds = 2
    return cfg


def write_random_model(folder: Path, stage1_dir: Path, method: str = "ours",
                       with_stage1: bool = True) -> Path:
    """A random-weight stage-2 model folder; mask methods carry ``stage1_dir`` as ``stage1/``."""
    import shutil

    from maskllp.methods import get_method
    from maskllp.proportion.inputs import InputSpec
    from maskllp.proportion.model import ProportionModel
    from maskllp.proportion.network import ProportionNet

    torch.manual_seed(0)
    m = get_method(method)
    square = InputSpec("square", size=64)
    model = ProportionModel(ProportionNet(m.network_spec(5)), m.name, PAPER_FIVE, square)
    out = model.save(folder / f"model-{method}")
    if m.uses_mask and with_stage1:
        shutil.copytree(stage1_dir, out / "stage1")
    return out


@pytest.fixture
def random_model():
    """``random_model(folder, stage1_dir, method="ours", with_stage1=True)``: a random-weight stage-2
    model folder ``folder/model-<method>``."""
    return write_random_model


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    """One folder per test module holding ``cohort/`` (:func:`write_tiny_cohort`), ``stage1/``
    (:func:`write_random_stage1`), ``model-ours/`` (:func:`write_random_model`, carrying the
    stage 1) and ``huge.tif`` (:func:`write_huge_header_tiff`), for tests that run many commands
    against the same inputs."""
    root = tmp_path_factory.mktemp("world")
    write_tiny_cohort(root / "cohort")
    write_huge_header_tiff(root / "huge.tif")
    stage1 = write_random_stage1(root / "stage1")
    write_random_model(root, stage1)
    return root


def make_stained_pixels(h_vec, dab_vec, n: int = 20_000, dab_share: float = 0.3, h_scale: float = 1.0,
                        seed: int = 0) -> np.ndarray:
    """(n, 3) uint8 pixels mixed from two stain vectors (optical density, any length): nuclei and
    stroma of hematoxylin alone (0.4-1.2 OD times ``h_scale``) and, as ``dab_share`` of the pixels,
    membranes of DAB (0.3-1.0 OD) over a little hematoxylin (0-0.1 OD)."""
    rng = np.random.default_rng(seed)
    membrane = rng.random(n) < dab_share
    h = np.where(membrane, rng.uniform(0.0, 0.1, n), rng.uniform(0.4, 1.2, n) * h_scale)
    d = np.where(membrane, rng.uniform(0.3, 1.0, n), 0.0)
    h_vec, dab_vec = np.asarray(h_vec) / np.linalg.norm(h_vec), np.asarray(dab_vec) / np.linalg.norm(dab_vec)
    od = h[:, None] * h_vec + d[:, None] * dab_vec
    return np.clip(np.round(255 * 10.0 ** -od), 0, 255).astype(np.uint8)


@pytest.fixture
def stained_pixels():
    """:func:`make_stained_pixels`: pixels of known stain vectors."""
    return make_stained_pixels
