"""Do the cells ``maskllp suggest`` picks teach stage 1 more than as many cells clicked at random?

    python benchmarks/suggested_clicks.py --table1 RUN --out OUT [--n 50,100,200] [--seeds 0,1,2]

RUN is a folder of ``benchmarks/table1_synthetic.py`` (a synthetic cohort with its truth, its
detector and stage 1). For each strategy (``diverse``, ``uncertain``, ``random``), number of cells
n and seed, a simulated pathologist labels the n suggested cells: each suggestion matched to a
true cell within ``detector.match_radius_um`` gets that cell's class (a suggestion on no true
cell, a false detection, is left unclassified as a person would leave it). The labels are added to
the cohort's annotations (the manifest's ``partial_points`` column), the tumour classifier is
trained again with the same detector and config, and the new stage 1 is scored against the truth on
every core, the labelled cells left out: tumour F1, tumour cells missed, lymphocytes / fibroblasts
/ macrophages called tumour, and the stage-1 ceiling of ``benchmarks/stage1_ceiling.py`` (mF1 / MAE
of perfect positivity on its tumour cells). ``--cv`` also cross-validates ``ours-cells`` on each new
stage 1 (the cohort's manifest unchanged otherwise). Prints a markdown table; writes OUT/results.csv.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stage1_ceiling import oracle_calls  # noqa: E402

from maskllp.classes import CellClass  # noqa: E402
from maskllp.config import Config, load_config  # noqa: E402
from maskllp.evaluation.detection_metrics import match_points  # noqa: E402
from maskllp.evaluation.metrics import interval_metrics, proportion_metrics  # noqa: E402
from maskllp.io.annotations import PointAnnotations, write_point_annotations_geojson  # noqa: E402
from maskllp.io.manifest import read_cohort  # noqa: E402
from maskllp.predictions import UNDEFINED  # noqa: E402
from maskllp.synth.cells import SUBTYPE_NAMES, Subtype  # noqa: E402
from maskllp.synth.truth import read_truth, read_truth_cells  # noqa: E402
from maskllp.training.inputs import Stage1MaskSource, default_cache_root  # noqa: E402
from maskllp.workflows.suggest import SuggestRun, suggest_cells  # noqa: E402
from maskllp.workflows.train import run_train_classifier  # noqa: E402


def labelled_cohort(run: Path, suggestions, out: Path, config: Config) -> tuple[Path, dict[str, set[int]]]:
    """A copy of the cohort manifest (absolute paths) with the oracle labels of ``suggestions`` in
    its ``partial_points`` column; and per image the indices of the true cells those labels name."""
    cohort_csv = run / "cohort" / "cohort.csv"
    truth = read_truth(run / "cohort" / "truth.csv")
    radius_um = config.detector.match_radius_um
    by_image: dict[str, list] = {}
    for s in suggestions:
        by_image.setdefault(Path(s.image).name, []).append(s)
    rows = [{**r, "partial_points": ""} for r in csv.DictReader(open(cohort_csv, newline=""))]
    clicked: dict[str, set[int]] = {}
    out.mkdir(parents=True, exist_ok=True)
    for row in rows:
        name = Path(row["image"]).name
        mpp = float(row["mpp"])
        for col in ("image", "points", "regions"):
            if row[col]:
                row[col] = str((cohort_csv.parent / row[col]).resolve())
        if name not in by_image:
            continue
        cells = read_truth_cells(truth[name].cells_path)
        yx = np.array([[s.y - 0.5, s.x - 0.5] for s in by_image[name]])
        p, q = match_points(yx, cells.yx, radius_um / mpp)
        if not len(p):
            continue
        clicked[name] = set(int(i) for i in q)
        path = out / f"{Path(name).stem}.partial.geojson"
        write_point_annotations_geojson(path, PointAnnotations(yx[p], cells.classes[q]), config.classes)
        row["partial_points"] = str(path)
    manifest = out / "cohort.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return manifest, clicked


def score_stage1(stage1: Path, run: Path, config: Config, clicked: dict[str, set[int]]) -> dict[str, float]:
    """Stage 1 against the truth of every core, the true cells in ``clicked`` left out."""
    cohort_csv = run / "cohort" / "cohort.csv"
    scheme = config.intervals.build()
    source = Stage1MaskSource(stage1, cells_root=default_cache_root(cohort_csv))
    threshold = source.model.mask.tumour_threshold
    truth = read_truth(run / "cohort" / "truth.csv")
    called: dict[str, list[bool]] = {}
    tp = fp = fn = 0
    exact, ceiling = [], []
    for entry in read_cohort(cohort_csv, scheme).entries:
        t = truth[entry.image.name]
        tc = read_truth_cells(t.cells_path)
        cells = source.cells(entry)
        tumour = cells.is_tumour(threshold)
        radius = config.detector.match_radius_um / cells.mpp
        p, q = match_points(cells.yx, tc.yx, radius)
        skip = clicked.get(entry.image.name, set())
        for i, j in zip(p, q, strict=True):
            if int(j) in skip:
                continue
            sub = SUBTYPE_NAMES[Subtype(int(tc.subtypes[j]))]
            called.setdefault(sub, []).append(bool(tumour[i]))
            is_t = tc.classes[j] != CellClass.NON_TUMOUR
            tp += is_t and tumour[i]
            fp += (not is_t) and tumour[i]
            fn += is_t and not tumour[i]
        positive, _ = oracle_calls(cells.yx[tumour], tc, radius)
        exact.append(t.tps)
        ceiling.append(float(positive.mean()) if tumour.any() else None)
    true_iv = [scheme.index_of(v) for v in exact]
    pred_iv = [UNDEFINED if v is None else int(scheme.index_of(v)) for v in ceiling]
    e = proportion_metrics(exact, ceiling)
    out = {"tumour_f1": 2 * tp / max(2 * tp + fp + fn, 1),
           "ceiling_mf1": interval_metrics(true_iv, pred_iv, len(scheme)).mf1,
           "ceiling_mae_pp": 100 * e.mae if e is not None and e.mae is not None else float("nan")}
    for sub, calls in called.items():
        share = float(np.mean(calls))
        if sub == "tumour":
            out["tumour_missed"] = 1 - share
        else:
            out[f"{sub}_called_tumour"] = share
    return out


def cv_ours_cells(run: Path, stage1: Path, out: Path) -> dict[str, float]:
    """``maskllp cv ... --methods ours-cells`` on the cohort's own manifest with ``stage1``."""
    cmd = ["maskllp", "cv", str(run / "cohort" / "cohort.csv"), "--methods", "ours-cells", "--folds", "4",
           "--stage1", str(stage1), "--truth", str(run / "cohort" / "truth.csv"), "--out", str(out),
           "-c", str(run / "cv.yaml"), "--overwrite"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    row = next(csv.DictReader(open(out / "table.csv")))
    return {"cv_mf1": float(row["mF1"]), "cv_mae_pp": 100 * float(row["MAE"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table1", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", default="100")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--strategies", default="diverse,uncertain,random")
    ap.add_argument("--cv", action="store_true", help="also cross-validate ours-cells on each new stage 1")
    args = ap.parse_args()
    run = args.table1.resolve()
    args.out = args.out.resolve()
    config = load_config([run / "config.yaml"])
    config = replace(config, trainer=replace(config.trainer, progress_bar=False))
    stage1 = run / "models" / "stage1"
    results = []

    def record(label: str, n: int, seed: int, stage: Path, clicked: dict[str, set[int]], n_labelled: int,
               cv_out: Path) -> None:
        t0 = time.perf_counter()
        row = {"strategy": label, "n": n, "seed": seed, "labelled": n_labelled,
               **score_stage1(stage, run, config, clicked)}
        if args.cv:
            row.update(cv_ours_cells(run, stage, cv_out))
        results.append(row)
        print(" | ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
              f"({time.perf_counter() - t0:.0f} s)", flush=True)

    record("none", 0, 0, stage1, {}, 0, args.out / "cv-none")
    for n in [int(v) for v in args.n.split(",")]:
        for strategy in args.strategies.split(","):
            for seed in [int(v) for v in args.seeds.split(",")]:
                tag = f"{strategy}-n{n}-s{seed}"
                work = args.out / tag
                rows = suggest_cells(SuggestRun(stage1, run / "cohort" / "cohort.csv", work / "suggest", n,
                                                strategy, seed, overwrite=True), config)
                manifest, clicked = labelled_cohort(run, rows, work / "cohort", config)
                new_stage1 = work / "stage1"
                run_train_classifier(manifest, run / "models" / "detector", new_stage1, config,
                                     overwrite=True)
                record(strategy, n, seed, new_stage1, clicked, sum(len(v) for v in clicked.values()),
                       work / "cv")
    keys = list(dict.fromkeys(k for r in results for k in r))
    with open(args.out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(results)
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in results:
        cells = [f"{r[k]:.3f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
