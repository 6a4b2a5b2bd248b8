"""Does the TPS range ``predict`` reports hold its level? Coverage on cores with a known TPS.

    python benchmarks/calibration.py MODEL COHORT.csv TRUTH.csv --out runs/calibration

``MODEL`` is a cell-level model folder (``ours-cells`` or Det), ``COHORT.csv`` / ``TRUTH.csv`` a
synthetic cohort it never saw (``maskllp synth`` with another seed). Each core is predicted as
``maskllp predict`` does; from the per-cell p(positive) the central range is computed at the levels
50, 80, 90 (what ``predict`` reports) and 95 % (``maskllp.proportion.uncertainty``). Printed, per
level, the share of cores whose range holds

* the exact TPS of the truth (what a user wants covered), and
* the TPS that stage 1's tumour cells would give with their true stain (what the range is about:
  the uncertainty of the positive / negative calls on the cells stage 1 counts; stage 1's own
  errors are outside it),

with the mean width; then the same for the range ``predict`` reports (the tempered 90 % range
widened by the model's conformal margin), and the share of cores flagged because that range lies
across the 1 % or 50 % cut-off, with how often the exact TPS and the estimate really are on different sides of
that cut-off. Writes ``calibration.png`` (nominal against observed coverage) and
``calibration.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from stage1_ceiling import oracle_calls

from maskllp.config import Config
from maskllp.inference.pipeline import Predictor
from maskllp.io.manifest import read_cohort
from maskllp.proportion.uncertainty import CLINICAL_CUT_OFFS, straddled_cut_offs, tps_interval
from maskllp.synth.truth import read_truth, read_truth_cells

LEVELS = (0.5, 0.8, 0.9, 0.95)


def stage1_truth_tps(cells, tumour: np.ndarray, truth_cells, radius_px: float) -> float | None:
    """The TPS of stage 1's tumour cells with their true stain (:func:`stage1_ceiling.oracle_calls`)."""
    yx = cells.yx[tumour]
    if not len(yx):
        return None
    return float(oracle_calls(yx, truth_cells, radius_px)[0].mean())


def tempered(p: np.ndarray, temperature: float) -> np.ndarray:
    """sigmoid(logit(p) / T): the probabilities behind the range predict reports."""
    with np.errstate(divide="ignore"):
        logit = np.log(p) - np.log1p(-p)
    return 1.0 / (1.0 + np.exp(np.clip(-logit / temperature, -700, 700)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("cohort", type=Path)
    ap.add_argument("truth", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    config = Config()
    predictor = Predictor.load(args.model)
    if predictor.stage1 is None:
        raise SystemExit("calibration needs a cell-level model (ours-cells or Det)")
    truth = read_truth(args.truth)
    model = getattr(predictor.fitted, "model", None)
    temperature = float(getattr(model, "range_temperature", 1.0))
    margin = getattr(model, "range_margin", None)
    rows = []
    for entry in read_cohort(args.cohort, predictor.scheme).entries:
        result, estimate, cells = predictor.predict(entry.image, entry.mpp, want_maps=False)
        if result.proportion is None or estimate.cell_positive is None or cells is None:
            continue
        t = truth[entry.image.name]
        tumour = cells.is_tumour(predictor.stage1.mask.tumour_threshold)
        s1 = stage1_truth_tps(cells, tumour, read_truth_cells(t.cells_path),
                              config.detector.match_radius_um / cells.mpp)
        ranges = {lv: tps_interval(tempered(estimate.cell_positive, temperature), lv) for lv in LEVELS}
        raw = {lv: tps_interval(estimate.cell_positive, lv) for lv in LEVELS}
        reported = (result.proportion_low, result.proportion_high)
        rows.append((result.proportion, t.tps, s1, ranges, int(tumour.sum()), raw, reported))
    n = len(rows)
    lines = ["# Calibration of the TPS range\n", f"{n} cores of {args.cohort}, model {args.model} "
             f"({predictor.method.name}), range temperature T = {temperature:.3g} (chosen on its "
             "validation cores); T = 1 is the network's own probabilities.\n",
             "| level | T | holds the exact TPS | holds stage 1's cells' true TPS | mean width (pp) |",
             "|---|---|---|---|---|"]
    observed = {}
    s1_rows = [r for r in rows if r[2] is not None]

    def holds(bounds: tuple[float, float], value: float) -> bool:
        return bounds[0] - 1e-9 <= value <= bounds[1] + 1e-9

    for lv in LEVELS:
        for col, name in ((5, "1"), (3, f"{temperature:.3g}")):
            exact_hit = float(np.mean([holds(r[col][lv], r[1]) for r in rows]))
            s1_hit = float(np.mean([holds(r[col][lv], r[2]) for r in s1_rows]))
            width = float(np.mean([100 * (r[col][lv][1] - r[col][lv][0]) for r in rows]))
            if col == 3:
                observed[lv] = (exact_hit, s1_hit)
            lines.append(f"| {100 * lv:.0f} % | {name} | {100 * exact_hit:.1f} % | {100 * s1_hit:.1f} % | "
                         f"{width:.1f} |")
    reported = [r for r in rows if r[6][0] is not None]
    m_text = "none" if margin is None else f"{100 * margin:.1f} pp"
    if reported:
        exact_hit = float(np.mean([holds(r[6], r[1]) for r in reported]))
        s1_rep = [r for r in reported if r[2] is not None]
        s1_hit = float(np.mean([holds(r[6], r[2]) for r in s1_rep])) if s1_rep else float("nan")
        width = float(np.mean([100 * (r[6][1] - r[6][0]) for r in reported]))
        observed["reported"] = (exact_hit, s1_hit)
        lines.append(f"| 90 % + margin {m_text} (reported by predict) | {temperature:.3g} | "
                     f"{100 * exact_hit:.1f} % | {100 * s1_hit:.1f} % | {width:.1f} |")
    lines.append("")
    for cut in CLINICAL_CUT_OFFS:
        flagged = [r for r in reported if cut in straddled_cut_offs(*r[6])]
        wrong = [r for r in rows if (r[0] >= cut) != (r[1] >= cut)]
        caught = [r for r in wrong if r[6][0] is not None and cut in straddled_cut_offs(*r[6])]
        lines.append(f"* cut-off {100 * cut:g} %: {len(flagged)} of {n} cores flagged (reported range across "
                     f"it); the estimate is on the wrong side of it for {len(wrong)} cores, "
                     f"{len(caught)} of them flagged.")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration.md").write_text(text, encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=150)
    xs = [100 * lv for lv in LEVELS]
    ax.plot([0, 100], [0, 100], color="0.6", lw=1, ls="--", label="calibrated")
    ax.plot(xs, [100 * observed[lv][1] for lv in LEVELS], "o-", label="stage 1's cells, true stain")
    ax.plot(xs, [100 * observed[lv][0] for lv in LEVELS], "s-", label="exact TPS of the core")
    if "reported" in observed:
        ax.plot([90], [100 * observed["reported"][0]], "D", color="C3",
                label=f"exact TPS, reported range (+ margin {m_text})")
    ax.set_xlabel("nominal level of the range (%)")
    ax.set_ylabel("cores whose range holds it (%)")
    ax.set_xlim(40, 100)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"TPS range calibration ({n} unseen cores)", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out / "calibration.png")
    print(f"wrote {args.out / 'calibration.png'}")


if __name__ == "__main__":
    main()
