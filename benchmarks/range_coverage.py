"""Cross-validated accuracy and TPS-range coverage of the fold models of a ``maskllp cv`` run, as
``maskllp predict`` gives them, at one or more ``[inference] views`` settings.

    maskllp cv COHORT.csv --methods ours ... --out runs/cv -c cv.toml   # with [cv] save_models = true
    python benchmarks/range_coverage.py runs/cv COHORT.csv TRUTH.csv --method ours --views 1,8

Each fold's model (``runs/cv/models/<method>-fold<k>``) predicts that fold's held-out cores (from
``runs/cv/folds.csv``) through :func:`maskllp.inference.pipeline.predict_cores`, so stage 1 runs
again on each image, as for a new core. Printed per views setting: macro-F1 over the labelled
intervals (undefined counts as wrong), mean absolute error against the exact TPS of the truth, the
share of cores whose reported 90 % range holds the exact TPS and whose range meets the labelled
interval (what the pixel methods' conformal margin promises), the mean range width, and how many
cores are flagged for a range across the 1 % or 50 % cut-off. Predictions go to
``runs/cv/coverage-views<V>/fold<k>/``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from maskllp.config import Config
from maskllp.inference.pipeline import PredictRun, predict_cores
from maskllp.io.manifest import read_cohort
from maskllp.synth.truth import read_truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cv_dir", type=Path)
    ap.add_argument("cohort", type=Path)
    ap.add_argument("truth", type=Path)
    ap.add_argument("--method", required=True)
    ap.add_argument("--views", default="1", help="comma-separated [inference] views settings")
    args = ap.parse_args()

    config = Config()
    config.trainer.progress_bar = False
    scheme = config.intervals.build()
    entries = {e.image.name: e for e in read_cohort(args.cohort, scheme, check_files=False).entries}
    truth = read_truth(args.truth)
    folds: dict[int, list[str]] = {}
    with open(args.cv_dir / "folds.csv", newline="") as f:
        for row in csv.DictReader(f):
            folds.setdefault(int(row["fold"]), []).append(Path(row["image"]).name)

    for views in (int(v) for v in args.views.split(",")):
        config.inference.views = views
        rows = []
        for k, names in sorted(folds.items()):
            out = args.cv_dir / f"coverage-views{views}" / f"fold{k}"
            manifest = out.parent / f"fold{k}.csv"
            manifest.parent.mkdir(parents=True, exist_ok=True)
            with open(manifest, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["image", "patient", "label", "mpp"])
                for n in names:
                    e = entries[n]
                    w.writerow([e.image, e.patient, e.label_text or "", e.mpp or ""])
            model = args.cv_dir / "models" / f"{args.method}-fold{k}"
            rows += predict_cores(PredictRun(model, [manifest], out, figures=False, overwrite=True), config)
        names = [Path(r.image).name for r in rows]
        label = np.array([int(scheme.index_of(np.array([truth[n].tps]))[0]) if entries[n].label is None
                          else entries[n].label.interval for n in names])
        exact = np.array([truth[n].tps for n in names])
        est = np.array([np.nan if r.proportion is None else r.proportion for r in rows])
        called = np.array([-1 if r.interval is None else scheme.names.index(r.interval) for r in rows])
        mf1 = f1_score(label, called, labels=list(range(len(scheme))), average="macro", zero_division=0)
        line = (f"{args.method}, views {views}: {len(rows)} cores, mF1 {mf1:.3f}, MAE "
                f"{100 * np.nanmean(np.abs(est - exact)):.1f} pp, {int(np.isnan(est).sum())} undefined")
        low = np.array([np.nan if r.proportion_low is None else r.proportion_low for r in rows])
        high = np.array([np.nan if r.proportion_high is None else r.proportion_high for r in rows])
        has = np.isfinite(low)
        if has.any():
            eps = 1e-9
            holds = (low[has] - eps <= exact[has]) & (exact[has] <= high[has] + eps)
            lo_k = scheme.boundaries[label[has]]
            hi_k = scheme.boundaries[label[has] + 1]
            meets = (low[has] <= hi_k + eps) & (high[has] >= lo_k - eps)
            flagged = sum(1 for r in rows if r.flags and "cut-off" in r.flags)
            line += (f"; 90 % range on {int(has.sum())} cores: holds the exact TPS "
                     f"{100 * holds.mean():.0f} %, meets the labelled interval {100 * meets.mean():.0f} %, "
                     f"mean width {100 * np.mean(high[has] - low[has]):.1f} pp, {flagged} flagged across a "
                     "cut-off")
        print(line, flush=True)


if __name__ == "__main__":
    main()
