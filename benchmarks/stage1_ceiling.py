"""How far can a perfect positivity call go on stage 1's cells? The ceiling stage 1 sets for TPS.

    python benchmarks/stage1_ceiling.py STAGE1 COHORT.csv TRUTH.csv

For each core, the cells stage 1 calls tumour (read from the cohort's stage-2 cache when ``maskllp
cv`` or ``train proportion`` made it) are matched one-to-one to the true cells within
``detector.match_radius_um``, and each gets an oracle positive / negative call: a matched true
tumour cell its true class, a matched non-tumour cell its true stain (a PD-L1-positive macrophage
counts positive, as a perfect stain reader would call it), an unmatched detection negative. The
counted TPS of those calls is what a method with perfect per-cell positivity would report on this
stage 1; a second count leaves out the cells that are not truly tumour (what a perfect tumour
classifier over the same detections would add). Printed: mF1 and MAE (pp) of both against the
exact TPS, with the cohort's interval scheme.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from maskllp.classes import CellClass
from maskllp.config import Config
from maskllp.evaluation.detection_metrics import match_points
from maskllp.evaluation.metrics import interval_metrics, proportion_metrics
from maskllp.io.manifest import read_cohort
from maskllp.predictions import UNDEFINED
from maskllp.synth.truth import read_truth, read_truth_cells
from maskllp.training.inputs import Stage1MaskSource, default_cache_root


def oracle_calls(yx: np.ndarray, truth_cells, radius_px: float) -> tuple[np.ndarray, np.ndarray]:
    """(positive, is_tumour) (N,) bool for detected cells at level-0 ``yx`` matched one-to-one to the
    true cells within ``radius_px``: a matched true tumour cell its class, a matched non-tumour cell
    its stain (it counts positive when stained), an unmatched detection negative and not tumour."""
    p, q = match_points(yx, truth_cells.yx, radius_px)
    positive = np.zeros(len(yx), bool)
    is_tumour = np.zeros(len(yx), bool)
    cls = truth_cells.classes[q]
    positive[p] = np.where(cls == CellClass.NON_TUMOUR, truth_cells.stained[q],
                           cls == CellClass.POSITIVE_TUMOUR)
    is_tumour[p] = cls != CellClass.NON_TUMOUR
    return positive, is_tumour


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage1", type=Path)
    ap.add_argument("cohort", type=Path)
    ap.add_argument("truth", type=Path)
    args = ap.parse_args()
    config = Config()
    scheme = config.intervals.build()
    source = Stage1MaskSource(args.stage1, cells_root=default_cache_root(args.cohort))
    truth = read_truth(args.truth)
    exact, with_stage1, tumour_only = [], [], []
    for entry in read_cohort(args.cohort, scheme).entries:
        t = truth[entry.image.name]
        cells = source.cells(entry)
        tumour = cells.is_tumour(source.model.mask.tumour_threshold)
        yx = cells.yx[tumour]
        positive, is_tumour = oracle_calls(yx, read_truth_cells(t.cells_path),
                                           config.detector.match_radius_um / cells.mpp)
        exact.append(t.tps)
        with_stage1.append(float(positive.mean()) if len(yx) else None)
        tumour_only.append(float(positive[is_tumour].mean()) if is_tumour.any() else None)
    true_iv = [scheme.index_of(v) if v is not None else UNDEFINED for v in exact]
    for name, counted in (("perfect positivity on stage 1's tumour cells", with_stage1),
                          ("... and only its truly tumour cells", tumour_only)):
        pred_iv = [UNDEFINED if v is None else int(scheme.index_of(v)) for v in counted]
        m = interval_metrics(true_iv, pred_iv, len(scheme))
        e = proportion_metrics(exact, counted)
        mae = "undefined" if e is None or e.mae is None else f"{100 * e.mae:.1f} pp"
        print(f"{name}: mF1 {m.mf1:.3f}, MAE {mae} ({len(exact)} cores)")


if __name__ == "__main__":
    main()
