"""How far the Table 1 methods carry: a learning curve and a stain shift, on a Table 1 run's cohort.

    python benchmarks/table1_synthetic.py --out runs/table1           # first: cohort + stage 1 (+ Table 1)
    python benchmarks/generalisation.py --table1 runs/table1 --out runs/gen
    python benchmarks/generalisation.py --table1 runs/table1 --out runs/g --parts shift --methods det

It reuses the Table 1 run's synthetic cohort (site A), its stage-1 models (trained on site A's
annotated cores) and its stage-2 input cache, and writes ``OUT/generalisation.md``.

1. **Learning curve** (``curve``): ``maskllp cv`` on the same 4 folds, each fold's method trained on
   at most N of its ~150 training cores (``--train-cores N``: a seeded subset, the smaller subsets
   inside the larger ones), for each N of ``--sizes``; the held-out cores are the same at every N.
2. **Stain shift** (``shift``): a second synthetic cohort (site B, patients ``S001``...) drawn with
   another seed and another lab's stain (``SITE_B``: stronger and redder DAB, paler hematoxylin, more
   blur and noise), put in one manifest with site A; ``maskllp cv --folds-from`` with fold 0 = site A,
   fold 1 = site B, so each method is trained on one site and tested on the other. Stage 1 stays the
   one trained on site A (as a lab that moves its model to a new scanner would have it); it is also
   scored on site B's true cells. Reported per direction (A -> B is the shift that matters).

Only interval labels (and site A's clicks, for the methods that use them) are supervision; the truth
is read for scoring. ``SITE_B`` is fixed here, not tuned to any method.
"""

from __future__ import annotations

import argparse
import csv
import platform
import time
from pathlib import Path
from typing import Any

import torch

from maskllp import __version__
from maskllp.config import config_from_mapping, merge_mappings, read_config_mapping, save_config, to_mapping
from maskllp.evaluation.detection_metrics import summary_line
from maskllp.evaluation.metrics import interval_metrics, proportion_metrics
from maskllp.methods import parse_methods
from maskllp.predictions import UNDEFINED
from maskllp.synth import generate_cohort
from maskllp.workflows.cross_validation import CrossValidationRequest, FoldPrediction, run_cross_validation
from maskllp.workflows.stage1_evaluation import evaluate_detection

SITE_B: dict[str, Any] = {"synth": {
    "seed": 4242,
    "cohort": {"patient_prefix": "S"},
    "stain": {
        "dab_vector": [0.22, 0.62, 0.75],  # a redder brown
        "hematoxylin_vector": [0.68, 0.62, 0.39],
        "dab_scale": [1.0, 1.6],  # stronger DAB
        "hematoxylin_scale": [0.5, 0.9],  # paler counterstain
        "blur_px": [1.0, 1.8],
        "noise": [1.5, 3.0],
    },
}}
"""Site B: what differs from site A's (the Table 1 run's) synthetic settings."""


def direction_scores(preds: list[FoldPrediction], fold: int, n_intervals: int
                     ) -> tuple[float, float | None, int]:
    """mF1, MAE (pp) and core count of the predictions of one held-out fold."""
    held = [p for p in preds if p.fold == fold]
    predicted = [UNDEFINED if p.prediction.interval is None else p.prediction.interval for p in held]
    m = interval_metrics([p.item.interval for p in held], predicted, n_intervals)
    e = proportion_metrics([p.item.proportion for p in held], [p.prediction.proportion for p in held])
    return m.mf1, None if e is None or e.mae is None else 100 * e.mae, len(held)


def merged_cohort(a: Path, b: Path, out: Path) -> tuple[Path, Path, Path]:
    """One manifest, one truth CSV and a folds CSV (site A fold 0, site B fold 1) over two synthetic
    cohorts' folders, with absolute paths (the cores stay where they are)."""
    out.mkdir(parents=True)
    manifest_rows, truth_rows, folds = [], [], ["image,fold"]
    for fold, root in enumerate((a, b)):
        with (root / "cohort.csv").open(newline="") as f:
            for row in csv.DictReader(f):
                for col in ("image", "points", "regions"):
                    if row.get(col):
                        row[col] = str((root / row[col]).resolve())
                manifest_rows.append(row)
                folds.append(f"{Path(row['image']).name},{fold}")
        with (root / "truth.csv").open(newline="") as f:
            for row in csv.DictReader(f):
                for col in ("image", "cells"):
                    row[col] = str((root / row[col]).resolve())
                truth_rows.append(row)
    paths = out / "cohort.csv", out / "truth.csv", out / "folds.csv"
    for path, rows in zip(paths[:2], (manifest_rows, truth_rows), strict=True):
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
    paths[2].write_text("\n".join(folds) + "\n")
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table1", type=Path, required=True, help="a benchmarks/table1_synthetic.py run folder")
    ap.add_argument("--out", type=Path, required=True, help="run folder (must not exist)")
    ap.add_argument("--parts", default="curve,shift")
    ap.add_argument("--methods", default="ours-cells,det,class,ours")
    ap.add_argument("--sizes", default="25,50,100", help="training cores per fold for the learning curve")
    ap.add_argument("--site-b-cores", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", "-c", type=Path, action="append", default=[],
                    help="settings over the Table 1 run's config.yaml (repeatable), e.g. an option to try")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    parts = {p.strip() for p in args.parts.split(",")}
    t1, out = args.table1, args.out
    cohort, truth, models = t1 / "cohort" / "cohort.csv", t1 / "cohort" / "truth.csv", t1 / "models"
    data = read_config_mapping(t1 / "config.yaml")
    for extra in args.config:
        data = merge_mappings(data, read_config_mapping(extra))
    # every run reads site A's stage-2 input cache (keyed by each image's absolute path)
    cache = str((t1 / "cohort" / ".maskllp-cache").resolve())
    data = merge_mappings(data, {"proportion": {"cache_dir": cache}})
    cfg = config_from_mapping(data, "Table 1 settings")
    out.mkdir(parents=True)
    methods = parse_methods(args.methods)
    scheme = cfg.intervals.build()
    lines = [f"# Learning curve and stain shift (Table 1 run {t1})", "",
             f"maskllp {__version__}, torch {torch.__version__}, "
             f"{platform.processor() or platform.machine()}, {args.threads} threads, CPU only.", ""]

    def cv(run: Path, config, cohort_csv: Path, truth_csv: Path, folds_file: Path | None = None):
        req = CrossValidationRequest(cohort_csv, methods, run, models / "stage1", None, truth_csv,
                                     models / "det", folds_file=folds_file)
        save_config(config, run.with_suffix(".yaml"))
        t0 = time.perf_counter()
        result = run_cross_validation(req, config)
        print(f"   {run.name}: {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
        return result

    if "curve" in parts:
        lines += ["## Learning curve", "", "Each fold trained on at most N cores (`maskllp cv "
                  "--train-cores N`); the same held-out cores at every N; pooled over 4 folds. "
                  "mF1 / MAE (pp).", "",
                  "| method | " + " | ".join(f"N = {n}" for n in args.sizes.split(",")) + " |",
                  "|---|" + "---|" * len(args.sizes.split(","))]
        by_method: dict[str, list[str]] = {m.display_name: [] for m in methods}
        for n in (int(s) for s in args.sizes.split(",")):
            capped = config_from_mapping(merge_mappings(to_mapping(cfg), {"cv": {"train_cores": n}}),
                                         f"N={n}")
            result = cv(out / f"curve-{n}", capped, cohort, truth)
            for s in result.scores:
                e = s.proportions
                mae = "" if e is None or e.mae is None else f" / {100 * e.mae:.1f}"
                by_method[s.display_name].append(f"{s.intervals.mf1:.3f}{mae}")
        lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in by_method.items()]
        lines += ["", "The full training folds (~150 cores) are the Table 1 run's own table.", ""]

    if "shift" in parts:
        b_cfg = config_from_mapping(merge_mappings(data, SITE_B), "site B")
        t0 = time.perf_counter()
        site_b = generate_cohort(out / "site-b", args.site_b_cores, b_cfg)
        print(f"   site B cohort: {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
        s1 = evaluate_detection(models / "stage1", site_b, cfg, site_b.parent / "truth.csv", "cpu")
        both, both_truth, folds = merged_cohort(t1 / "cohort", site_b.parent, out / "sites")
        result = cv(out / "shift", cfg, both, both_truth, folds)
        changes = ", ".join(f"`{k} = {v}`" for k, v in SITE_B["synth"]["stain"].items())
        lines += ["## Stain shift", "", f"Site B: site A's generator with {changes} (seed "
                  f"{SITE_B['synth']['seed']}, {args.site_b_cores} cores).", "",
                  f"Stage 1 (trained on site A) on site B: {summary_line(s1['overall'])} (on site A: "
                  "the Table 1 run's stage-1 line).", "",
                  "| method | train A, test B: mF1 | MAE (pp) | train B, test A: mF1 | MAE (pp) |",
                  "|---|---|---|---|---|"]
        for method in methods:
            preds = [p for p in result.predictions if p.method.name == method.name]
            ab, ba = direction_scores(preds, 1, len(scheme)), direction_scores(preds, 0, len(scheme))
            cells = [f"{mf1:.3f} | {'' if mae is None else f'{mae:.1f}'}" for mf1, mae, _ in (ab, ba)]
            lines.append(f"| {method.display_name} | " + " | ".join(cells) + " |")
        lines += ["", "In distribution (site A, 4-fold, ~150 training cores): the Table 1 run's table.", ""]
    (out / "generalisation.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
