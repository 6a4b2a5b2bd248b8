"""The Table 1 printer: Method | mask | per-interval recall | mRecall | mPrecision | mF1 [| exact].

One row per method, in the paper's layout, as aligned text (stdout), CSV and Markdown. When exact
proportions are known, three columns follow: mean absolute error and agreement at the clinical
cut-offs. A footer says how the numbers were obtained (cores, folds, mask source, undefined
predictions and how they count).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from maskllp.evaluation.detection_metrics import PositivityScores
from maskllp.evaluation.metrics import IntervalMetrics, ProportionMetrics, RangeCoverage
from maskllp.intervals import IntervalScheme


@dataclass(frozen=True)
class MethodScores:
    """The pooled out-of-fold scores of one method."""

    name: str
    display_name: str
    mask: str
    """What the mask column shows: ``""`` (no mask), ``"yes"``, or ``"oracle"`` (synthetic truth)."""
    intervals: IntervalMetrics
    proportions: ProportionMetrics | None
    fold_mf1: tuple[float, ...]
    """mF1 of each fold alone (for the spread across folds)."""
    interval_only: bool = False
    """True when the method predicts an interval only (its proportion is the interval midpoint)."""
    cells: PositivityScores | None = None
    """A cell-level method's positive / negative calls against the true cells (synthetic truth)."""
    ranges: RangeCoverage | None = None
    """How often its 90 % TPS ranges held (None: the method reports none)."""


def _pct(c: float) -> str:
    return f"{c * 100:g} %"


def table_cells(scores: Sequence[MethodScores], scheme: IntervalScheme,
                cutoffs: Sequence[float]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table (numbers with three decimals, empty where not applicable)."""
    exact = any(s.proportions is not None for s in scores)
    header = ["Method", "mask", *scheme.names, "mRecall", "mPrecision", "mF1"]
    if exact:
        header += ["MAE", *[f"agree {_pct(c)}" for c in cutoffs]]
    header.append("undefined")
    rows = []
    for s in scores:
        m = s.intervals
        row = [s.display_name, s.mask, *[f"{r:.3f}" for r in m.recall],
               f"{m.mrecall:.3f}", f"{m.mprecision:.3f}", f"{m.mf1:.3f}"]
        if exact:
            p = s.proportions
            row.append("" if p is None or p.mae is None else f"{p.mae:.3f}")
            row += ["" if p is None else f"{p.agreement.get(float(c), float('nan')):.3f}" for c in cutoffs]
        row.append(str(m.n_undefined))
        rows.append(row)
    return header, rows


def format_text(header: list[str], rows: list[list[str]], footer: Sequence[str] = ()) -> str:
    """Aligned plain-text table (first column left-aligned, numbers right-aligned)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths), *[line(r) for r in rows]]
    return "\n".join(out + ([""] + list(footer) if footer else [])) + "\n"


def format_markdown(header: list[str], rows: list[list[str]], footer: Sequence[str] = ()) -> str:
    """GitHub Markdown table, footer lines as a list below it."""
    def esc(c: str) -> str:
        return c.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    if footer:
        lines += [""] + [f"- {f}" for f in footer]
    return "\n".join(lines) + "\n"


def format_csv(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def table_footer(scores: Sequence[MethodScores], n_cores: int, n_folds: int, mask_source: str | None,
                 seed: int, folds_file: str | None = None, train_cores: int | None = None) -> list[str]:
    """Lines that say how the table was made (``folds_file``: the folds were read from it;
    ``train_cores``: each fold trained on at most that many cores)."""
    how = (f"folds from {folds_file}" if folds_file is not None
           else f"stratified by interval, grouped by patient, seed {seed}")
    lines = [f"{n_cores} cores, {n_folds}-fold cross-validation ({how}); metrics on the pooled "
             "out-of-fold predictions, scikit-learn, labels = all intervals, zero_division = 0."]
    if train_cores is not None:
        lines.append(f"each fold trained on at most {train_cores} of its training cores (seeded subset, "
                     f"seed {seed}).")
    if mask_source is not None:
        what = ("ORACLE masks from the synthetic truth (stage 1 bypassed)" if mask_source == "truth"
                else f"tumour masks from {mask_source}")
        lines.append(f"mask: {what}.")
    undefined = {s.display_name: s.intervals.n_undefined for s in scores if s.intervals.n_undefined}
    if undefined:
        lines.append("undefined predictions (empty tumour mask / no tumour cell found) count as wrong: "
                     + ", ".join(f"{k} {v}" for k, v in undefined.items()) + ".")
    else:
        lines.append("undefined predictions (empty tumour mask) would count as wrong; there were none.")
    interval_only = [s.display_name for s in scores if s.interval_only]
    if interval_only and any(s.proportions is not None for s in scores):
        verb = "predicts" if len(interval_only) == 1 else "predict"
        lines.append(f"{', '.join(interval_only)} {verb} an interval only: MAE and agreement use the "
                     "predicted interval's midpoint.")
    cells = [s for s in scores if s.cells is not None and s.cells.n]
    if cells:
        def f(v: float | None) -> str:
            return "undefined" if v is None else f"{v:.3f}"

        lines.append("per-cell positive / negative calls on the matched true tumour cells of the held-out "
                     "cores (macro F1, positive precision / recall): "
                     + "; ".join(f"{s.display_name} {f(s.cells.macro_f1)} ({f(s.cells.precision)} / "
                                 f"{f(s.cells.recall)}, {s.cells.n} cells)" for s in cells if s.cells) + ".")
    ranged = [s for s in scores if s.ranges is not None]
    if ranged:
        def cover(r: RangeCoverage) -> str:
            if r.mean_width >= 0.999:
                return "0-100 % on every core (too few validation cores for a narrower 90 % range)"
            exact = "" if r.holds_exact is None else f", holds the exact TPS {100 * r.holds_exact:.0f} %"
            return (f"meets the labelled interval {100 * r.meets_label:.0f} %{exact}, "
                    f"mean width {100 * r.mean_width:.1f} pp")

        lines.append("90 % TPS range on the held-out cores: "
                     + "; ".join(f"{s.display_name} {cover(s.ranges)}" for s in ranged if s.ranges) + ".")
    if len(scores) and len(scores[0].fold_mf1) > 1:
        spread = ", ".join(f"{s.display_name} {min(s.fold_mf1):.3f}-{max(s.fold_mf1):.3f}" for s in scores)
        lines.append(f"mF1 range over single folds: {spread}.")
    return lines
