"""Cross-validation fixtures on top of the shared tiny cohort and stage-1 folder (tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

from maskllp.config import Config


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
    cfg.cv.folds = 2
    return cfg
