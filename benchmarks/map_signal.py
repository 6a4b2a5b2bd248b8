"""Do a trained model's F_p / F_n maps carry signal? Read them under every true cell of new cores.

    python benchmarks/map_signal.py MODEL COHORT.csv TRUTH.csv --out DIR [--figures 4]

MODEL is a trained map method's folder (``maskllp train proportion --method ours``); COHORT a
synthetic cohort it never saw, with its truth. For each core the model predicts as ``maskllp
predict`` does; then F_p / (F_p + F_n) is read under each true cell (the map cell under its centre)
and compared between true positive tumour cells, true negative tumour cells and non-tumour cells:
the AUC of positive against negative tumour cells says whether red means positive (0.5: no signal).
Writes ``DIR/map_signal.md`` and the paper's Fig. 5 of ``--figures`` cores spread over the true TPS
(lowest to highest).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from maskllp.classes import CellClass
from maskllp.inference.pipeline import Predictor
from maskllp.io.images import open_image
from maskllp.io.manifest import read_cohort
from maskllp.methods import map_ratio_at
from maskllp.report.overlay import proportion_figure
from maskllp.synth.truth import read_truth, read_truth_cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("cohort", type=Path)
    ap.add_argument("truth", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--figures", type=int, default=4)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=False)
    predictor = Predictor.load(args.model)
    truth = read_truth(args.truth)
    entries = read_cohort(args.cohort, predictor.scheme).entries
    by_tps = sorted(range(len(entries)), key=lambda j: truth[entries[j].image.name].tps or 0.0)
    picks = {by_tps[round(q)] for q in np.linspace(0, len(entries) - 1, min(args.figures, len(entries)))}
    ratios: dict[str, list[np.ndarray]] = {"positive tumour": [], "negative tumour": [], "non-tumour": []}
    rows = []
    for i, entry in enumerate(entries):
        result, estimate, _ = predictor.predict(entry.image, entry.mpp, want_maps=True)
        if estimate.maps is None or estimate.fit is None:
            raise SystemExit(f"{args.model}: method {predictor.method.name} has no F_p / F_n maps")
        with open_image(entry.image, entry.mpp) as reader:
            shape = reader.shape
        cells = read_truth_cells(truth[entry.image.name].cells_path)
        r = map_ratio_at(estimate.maps, cells.yx, shape, estimate.fit)
        for name, cls in (("positive tumour", CellClass.POSITIVE_TUMOUR),
                          ("negative tumour", CellClass.NEGATIVE_TUMOUR)):
            ratios[name].append(r[cells.classes == cls])
        ratios["non-tumour"].append(r[cells.classes == CellClass.NON_TUMOUR])
        rows.append((entry.image.stem, truth[entry.image.name].tps, result.proportion))
        if i in picks and estimate.image is not None and estimate.mask is not None:
            tps = truth[entry.image.name].tps
            title = f"{entry.image.stem}: TPS {result.proportion:.1%} (truth {tps:.1%})"
            proportion_figure(estimate.image, estimate.mask, estimate.maps[0], estimate.maps[1], title,
                              args.out / f"{entry.image.stem}.figure.png")
    pooled = {k: np.concatenate(v) if v else np.zeros(0) for k, v in ratios.items()}
    pos, neg = pooled["positive tumour"], pooled["negative tumour"]
    auc = roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]) \
        if len(pos) and len(neg) else float("nan")
    errors = [abs(p - t) for _, t, p in rows if t is not None and p is not None]
    lines = [f"# Map signal of {args.model} on {args.cohort} ({len(rows)} cores)", "",
             "F_p / (F_p + F_n) under each true cell (map cell under its centre):", "",
             "| cells | n | mean | median |", "|---|---|---|---|",
             *[f"| {k} | {len(v)} | {v.mean():.3f} | {np.median(v):.3f} |"
               for k, v in pooled.items() if len(v)],
             "", f"AUC positive vs negative tumour cells: **{auc:.3f}** (0.5: the maps do not tell them "
                 "apart).",
             f"TPS mean absolute error on these cores: {100 * np.mean(errors):.1f} pp.", ""]
    (args.out / "map_signal.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
