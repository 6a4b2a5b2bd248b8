"""Oracle experiments on a synthetic cohort: masks from the true tumour cells, exact TPS in the table."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from maskllp.classes import CellClass
from maskllp.config import Config
from maskllp.intervals import PAPER_FIVE
from maskllp.io.manifest import read_cohort
from maskllp.methods import parse_methods
from maskllp.proportion.inputs import InputSpec
from maskllp.synth.truth import read_truth, read_truth_cells
from maskllp.training.inputs import ItemCache, TruthMaskSource, file_digest, prepare_items, truth_cells
from maskllp.workflows.cross_validation import CrossValidationRequest, run_cross_validation


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from maskllp.synth import generate_cohort

    cfg = Config()
    cfg.synth.size = 256
    cfg.synth.seed = 5
    manifest = generate_cohort(tmp_path_factory.mktemp("synth") / "cohort", 10, cfg)
    return manifest, manifest.parent / "truth.csv"


def test_truth_masks_cover_the_true_tumour_cells(synthetic, tmp_path) -> None:
    manifest, truth = synthetic
    cohort = read_cohort(manifest, PAPER_FIVE)
    names = [e.image.name for e in cohort.entries]
    source = TruthMaskSource(truth_cells(truth, names), 5.0, file_digest(truth))
    cache = ItemCache(tmp_path, InputSpec("square", size=256))
    items = prepare_items(cohort.entries, PAPER_FIVE, source, cache)
    cores = read_truth(truth)
    for entry, item in zip(cohort.entries, items, strict=True):
        cells = read_truth_cells(cores[entry.image.name].cells_path)
        mask = item.load_mask()  # 256 px cores fill the 256 square: mask pixels = image pixels
        r, c = np.round(cells.yx).astype(int).clip(0, 255).T
        tumour = cells.classes != CellClass.NON_TUMOUR
        assert mask[r[tumour], c[tumour]].all()
        if tumour.any() and (~tumour).any():  # non-tumour cells mostly outside
            assert mask[r[~tumour], c[~tumour]].mean() < 0.5
        assert item.proportion is None or item.proportion == pytest.approx(cores[entry.image.name].tps)


def test_oracle_cv_reports_exact_errors(synthetic, cv_config, tmp_path) -> None:
    manifest, truth = synthetic
    cfg = cv_config
    req = CrossValidationRequest(manifest, parse_methods("ours"), tmp_path / "run", mask_source="truth",
                                 truth=truth)
    result = run_cross_validation(req, cfg, echo=lambda s: None)
    assert "ORACLE masks" in result.table and "oracle" in result.table.splitlines()[2]
    rows = list(csv.DictReader((tmp_path / "run" / "predictions.csv").open()))
    # every labelled core is predicted once with its exact TPS (a tumour-free core has no label: left out)
    tps = {name: t.tps for name, t in read_truth(truth).items() if t.tps is not None}
    # 6 significant digits in the CSV
    assert {Path(r["image"]).name: float(r["truth"]) for r in rows} == pytest.approx(tps, abs=1e-6)
    exact = result.scores[0].proportions
    assert exact is not None and exact.n == len(tps)


def test_cv_scores_the_cell_calls_of_cell_level_methods_against_the_truth(synthetic, stage1_dir, cv_config,
                                                                         tmp_path) -> None:
    manifest, truth = synthetic
    cv_config.proportion.cells.max_epochs = 2
    methods = parse_methods("det,ours-cells,class")
    req = CrossValidationRequest(manifest, methods, tmp_path / "run", stage1=stage1_dir, truth=truth,
                                 det_model=stage1_dir)
    result = run_cross_validation(req, cv_config, echo=lambda s: None)
    det, cells, pixel = result.scores
    labelled = {Path(r["image"]).name for r in csv.DictReader((tmp_path / "run" / "predictions.csv").open())}
    stained = sum(int(np.isin(read_truth_cells(c.cells_path).classes,
                              [CellClass.POSITIVE_TUMOUR, CellClass.NEGATIVE_TUMOUR]).sum())
                  for name, c in read_truth(truth).items() if name in labelled)
    for s in (det, cells):  # each true stained tumour cell is matched once at most
        assert s.cells is not None and 0 < s.cells.n <= stained
    assert pixel.cells is None
    assert "per-cell positive / negative calls" in result.table
