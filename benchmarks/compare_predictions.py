"""How far two ``maskllp predict`` runs of the same cores differ (e.g. bf16 against fp32): TPS in
percentage points, and the cells found, matched by position between the two runs' per-core cell
GeoJSON (read as maskllp reads annotations) within the stage-1 match radius.

    python benchmarks/compare_predictions.py PRED_FP32 PRED_BF16 [--radius-px 6]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from maskllp.evaluation.detection_metrics import detection_scores
from maskllp.io.annotations import read_annotations


def read_rows(folder: Path) -> dict[str, dict[str, str]]:
    with open(folder / "predictions.csv", newline="") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference", type=Path)
    ap.add_argument("other", type=Path)
    ap.add_argument("--radius-px", type=float, default=6.0)
    args = ap.parse_args()
    ref, other = read_rows(args.reference), read_rows(args.other)
    names = [n for n in ref if n in other]
    diffs, f1s = [], []
    for name in names:
        p, q = ref[name]["proportion"], other[name]["proportion"]
        if p and q:
            diffs.append(abs(float(p) - float(q)) * 100.0)
        cells = [args.reference / f"{name}.cells.geojson", args.other / f"{name}.cells.geojson"]
        if all(c.exists() for c in cells):
            ref_yx, other_yx = (read_annotations(c).points.yx for c in cells)
            scores = detection_scores(other_yx, ref_yx, args.radius_px)
            f1s.append(1.0 if scores.f1 is None else scores.f1)
    print(f"{len(names)} cores in both runs; TPS |difference|: mean {np.mean(diffs):.3f} pp, "
          f"max {np.max(diffs):.3f} pp over {len(diffs)} cores with a defined TPS" if diffs else
          f"{len(names)} cores in both runs; no core with a defined TPS in both")
    if f1s:
        print(f"cells matched between the runs within {args.radius_px:g} px: F1 mean {np.mean(f1s):.4f}, "
              f"min {np.min(f1s):.4f} over {len(f1s)} cores")
    else:
        print("no per-core cell GeoJSON found in both runs")


if __name__ == "__main__":
    main()
