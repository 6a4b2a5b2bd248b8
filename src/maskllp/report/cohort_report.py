"""The cohort report of ``maskllp predict``: one self-contained HTML page over every predicted core.

It holds the distribution of estimates over the interval scheme and the clinical cut-offs (1 %,
50 %), the cores whose TPS is undefined (no tumour cells found) or close to a cut-off (worth a
pathologist's look), agreement with the cores' labels when the input was a labelled manifest
(confusion matrix, per-interval recall, mRecall, mPrecision, mF1, and an inline-SVG plot of each
core's estimate against its labelled interval), and a row per core with its thumbnail, counts and
links. The page loads no remote resource; its one script (inline) sorts the cores' table.
``tests/report/test_cohort_report.py`` opens it in headless Chromium.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maskllp.evaluation.metrics import UNDEFINED, interval_metrics
from maskllp.intervals import IntervalScheme
from maskllp.io.atomic import write_text_atomic
from maskllp.predictions import PredictionRow
from maskllp.proportion.uncertainty import CLINICAL_CUT_OFFS as CUT_OFFS

NEAR_CUT_OFF = 0.2
"""A defined estimate within this relative distance of a cut-off is flagged for review."""


def _pct(p: float | None) -> str:
    return "undefined" if p is None else f"{100 * p:.1f} %"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _bar(n: int, total: int) -> str:
    width = 0 if total == 0 else round(200 * n / total)
    return f'<span class="bar" style="width:{width}px"></span> {n}'


TIERS = ("< 1 %", "1-49 %", ">= 50 %")
"""The clinical tiers of a PD-L1 TPS, split by :data:`CUT_OFFS`."""


def clinical_tier(p: float | None) -> str:
    """The clinical tier of a TPS (``>=`` at each cut-off, as the interval convention), or ``-``."""
    return "-" if p is None else TIERS[int(np.searchsorted(CUT_OFFS, p, side="right"))]


def near_cut_off(p: float | None) -> bool:
    """Whether an estimate lies within ``NEAR_CUT_OFF`` (relative) of a clinical cut-off."""
    return p is not None and any(abs(p - c) <= NEAR_CUT_OFF * c for c in CUT_OFFS)


def _distribution(results: Sequence[PredictionRow], scheme: IntervalScheme) -> str:
    names = list(scheme.names)
    counts = {n: 0 for n in names}
    undefined = 0
    for r in results:
        if r.interval is None:
            undefined += 1
        else:
            counts[r.interval] += 1
    rows = [[html.escape(n), _bar(counts[n], len(results))] for n in names]
    rows.append(["undefined (no tumour cells)", _bar(undefined, len(results))])
    tiers = [clinical_tier(r.proportion) for r in results if r.proportion is not None]
    tier_rows = [[html.escape(t), _bar(tiers.count(t), len(results))] for t in TIERS]
    return ("<h2>Estimates by interval</h2>" + _table(["interval", "cores"], rows)
            + "<h2>Estimates by clinical tier</h2>" + _table(["TPS", "cores"], tier_rows))


def _labelled(results: Sequence[PredictionRow], scheme: IntervalScheme) -> list[tuple[PredictionRow, int]]:
    """The cores whose label parses in ``scheme``, with their labelled interval's index."""
    out = []
    for r in results:
        if r.label is None or r.label == "":
            continue
        try:
            out.append((r, scheme.parse(r.label).interval))
        except ValueError:
            continue
    return out


def _agreement(results: Sequence[PredictionRow], scheme: IntervalScheme) -> str:
    pairs = [(true, UNDEFINED if r.interval is None else scheme.names.index(r.interval))
             for r, true in _labelled(results, scheme)]
    if not pairs:
        return ""
    t, p = zip(*pairs, strict=True)
    m = interval_metrics(list(t), list(p), len(scheme))
    names = list(scheme.names)
    conf_rows = [[html.escape(names[i])] + [str(v) for v in m.confusion[i]] for i in range(len(names))]
    recall = [[html.escape(n), f"{v:.3f}"] for n, v in zip(names, m.recall, strict=True)]
    return (
        f"<h2>Agreement with the labels ({m.n} labelled cores)</h2>"
        f"<p>mRecall {m.recall.mean():.3f} &middot; mPrecision {m.precision.mean():.3f} &middot; "
        f"mF1 {m.f1.mean():.3f}; undefined predictions ({m.n_undefined}) count as wrong.</p>"
        + _table(["label \\ predicted"] + names + ["undefined"], conf_rows)
        + _table(["interval", "recall"], recall)
        + _scatter(results, scheme)
    )


def _exact_agreement(results: Sequence[PredictionRow], cutoffs: Sequence[float] = (0.01, 0.5)) -> str:
    """Against exact proportions (an exact label, or synthetic truth): the mean absolute error over
    the cores with a defined estimate, and how many lie on the same side of each clinical cut-off
    (``>=``, the interval convention; an undefined estimate counts as a disagreement)."""
    known = [r for r in results if r.truth is not None]
    if not known:
        return ""
    defined = [r for r in known if r.proportion is not None]
    mae = (f"mean absolute error {100 * np.mean([abs(r.proportion - r.truth) for r in defined]):.1f} pp "
           f"over the {len(defined)} with a TPS" if defined else "no core with a TPS")

    def same_side(c: float) -> int:
        return sum(r.proportion is not None and (r.proportion >= c) == (r.truth >= c) for r in known)

    sides = "; ".join(f"same side of {100 * c:g} %: {same_side(c)} of {len(known)}" for c in cutoffs)
    return f"<h2>Against the exact proportions ({len(known)} cores)</h2><p>{mae}; {sides}.</p>"


SCATTER_SIZE = (520, 320)
"""Width and height (px) of the estimate-against-label plot."""


def _scatter(results: Sequence[PredictionRow], scheme: IntervalScheme) -> str:
    """An inline SVG: one column per labelled interval, the estimated TPS of its cores as dots on a
    square-root scale (so that '0-1 %' is visible), the labelled interval's range shaded: a dot in
    the shaded band agrees with its label. Undefined estimates are counted under each column."""
    pairs = _labelled(results, scheme)
    if not pairs:
        return ""
    width, height = SCATTER_SIZE
    left, right, top, bottom = 56, 10, 10, 44
    k = len(scheme)
    col = (width - left - right) / k
    b = scheme.boundaries

    def y(p: float) -> float:
        return top + (height - top - bottom) * (1 - float(np.sqrt(min(max(p, 0.0), 1.0))))

    parts = [f'<svg id="scatter" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'role="img" aria-label="estimated TPS against the labelled interval">']
    for t in sorted({0.0, *b.tolist()}):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{y(t) + 4:.1f}" font-size="11" text-anchor="end">'
                     f'{100 * t:g} %</text>')
    undefined = [0] * k
    for i in range(k):
        x0 = left + i * col
        parts.append(f'<rect x="{x0 + 2:.1f}" y="{y(b[i + 1]):.1f}" width="{col - 4:.1f}" '
                     f'height="{y(b[i]) - y(b[i + 1]):.1f}" fill="#cfe8cf"/>'
                     f'<text x="{x0 + col / 2:.1f}" y="{height - bottom + 16}" font-size="11" '
                     f'text-anchor="middle">{html.escape(scheme.names[i])}</text>')
    for j, (r, true) in enumerate(pairs):
        if r.proportion is None:
            undefined[true] += 1
            continue
        jitter = ((j * 0.618034) % 1.0 - 0.5) * 0.6 * col  # deterministic spread within the column
        inside = scheme.index_of(r.proportion) == true
        cx = left + (true + 0.5) * col + jitter
        parts.append(f'<circle cx="{cx:.1f}" cy="{y(r.proportion):.1f}" r="3" '
                     f'fill="{"#2b6a2b" if inside else "#b5523b"}" fill-opacity="0.8">'
                     f'<title>{html.escape(r.name)}: {_pct(r.proportion)}, label {html.escape(str(r.label))}'
                     '</title></circle>')
    for i, n in enumerate(undefined):
        if n:
            parts.append(f'<text x="{left + (i + 0.5) * col:.1f}" y="{height - 8}" font-size="10" '
                         f'text-anchor="middle">{n} undefined</text>')
    parts.append(f'<text x="12" y="{top + (height - top - bottom) / 2:.0f}" font-size="11" '
                 f'transform="rotate(-90 12 {top + (height - top - bottom) / 2:.0f})" text-anchor="middle">'
                 'estimated TPS (square-root scale)</text></svg>')
    return ("<h3>Estimate against label</h3><p>One column per labelled interval, its range shaded; a green "
            "dot agrees with its label, a red one does not (hover a dot for the core).</p>" + "".join(parts))


THUMBNAIL_SIDE = 160
"""Longer side of the thumbnails embedded in the report."""


def thumbnail_data_uri(path: Path, side: int = THUMBNAIL_SIDE) -> str | None:
    """``path`` (an image) reduced to ``side`` px as a ``data:image/jpeg;base64`` URI (the report stays
    one self-contained file, ~5-10 KB per core); None when there is no readable image there."""
    import base64
    import io

    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((side, side))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85)
    except (OSError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _histogram(results: Sequence[PredictionRow]) -> str:
    """Cores by TPS in 10-point bins (the 0-1 % cut-off bin apart)."""
    edges = [0.0, 0.01, *[k / 10 for k in range(1, 11)]]
    counts = [0] * (len(edges) - 1)
    for r in results:
        if r.proportion is not None:
            counts[min(int(np.searchsorted(edges, r.proportion, side="right")) - 1, len(counts) - 1)] += 1
    names = [f"{100 * a:g}-{100 * b:g} %" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    rows = [[n, _bar(c, len(results))] for n, c in zip(names, counts, strict=True)]
    return "<h2>Estimates by TPS</h2>" + _table(["TPS", "cores"], rows)


def _sortable(value: str, key: float | str | None) -> str:
    """A cell that sorts by ``key`` (undefined values last)."""
    k = "" if key is None else (f"{key:.6f}" if isinstance(key, float) else str(key))
    return f'<td data-key="{html.escape(k)}">{value}</td>'


def _cores(results: Sequence[PredictionRow], folder: Path | None) -> str:
    """A row per core, sortable by any column (click its header); a thumbnail of the core with its
    cells and mask when ``predict`` wrote a preview; links only to the files that exist in
    ``folder`` (the report's own folder; None: link every file a prediction writes)."""
    def link(file: str, text: str) -> str:
        if folder is not None and not (folder / file).is_file():
            return ""
        return f'<a href="{html.escape(file)}">{text}</a>'

    rows = []
    for r in results:
        flag = []
        if r.proportion is None:
            flag.append("undefined")
        elif r.proportion_low is None and near_cut_off(r.proportion):
            flag.append("near a cut-off")  # no interval: the distance to a cut-off is all there is
        if r.flags:
            flag.append(r.flags)
        links = (link(f"{r.name}.tps.json", "json"), link(f"{r.name}.cells.geojson", "cells"),
                 link(f"{r.name}.mask.geojson", "mask"), link(f"{r.name}.figure.png", "figure"),
                 link(f"{r.name}.preview.png", "preview"))
        files = " ".join(x for x in links if x)
        thumb = thumbnail_data_uri(folder / f"{r.name}.preview.png") if folder is not None else None
        picture = (f'<img src="{thumb}" alt="{html.escape(r.name)}: cells and tumour mask">'
                   if thumb else "-")
        non_tumour = None if r.cells is None or r.tumour_cells is None else r.cells - r.tumour_cells
        cells = [r.positive_cells, r.negative_cells, non_tumour]
        review = ", ".join(flag)
        rows.append("<tr>" + "".join([
            _sortable(html.escape(r.name), r.name), f"<td>{picture}</td>",
            _sortable(_pct(r.proportion), r.proportion),
            _sortable("-" if r.proportion_low is None or r.proportion_high is None
                      else f"{_pct(r.proportion_low)} - {_pct(r.proportion_high)}", r.proportion_low),
            _sortable(html.escape(r.interval or "-"), r.interval),
            _sortable(html.escape(clinical_tier(r.proportion)), r.proportion),
            *(_sortable("-" if v is None else str(v), None if v is None else float(v)) for v in cells),
            _sortable("-" if r.tumour_area_fraction is None else f"{100 * r.tumour_area_fraction:.1f} %",
                      r.tumour_area_fraction),
            _sortable(html.escape(r.label or "-"), r.label),
            _sortable(html.escape(review or "-"), f"0{review}" if review else "1"),
            f"<td>{files or '-'}</td>",
        ]) + "</tr>")
    header = ["core", "picture", "TPS", "TPS 90 % range", "interval", "clinical tier",
              "positive tumour cells", "negative tumour cells", "non-tumour cells", "tumour area", "label",
              "review", "files"]
    head = "".join(f"<th>{h}</th>" if h in ("picture", "files")
                   else f'<th onclick="sortBy(this)" title="sort">{html.escape(h)}</th>' for h in header)
    return ("<h2>Cores</h2><p>Click a column's header to sort by it (again: reverse); flagged cores sort "
            "first by <i>review</i>.</p>"
            f'<table id="cores"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


SORT_SCRIPT = """function sortBy(th){const t=th.closest('table'),b=t.tBodies[0];
const i=[...th.parentNode.children].indexOf(th);
const up=th.dataset.dir!=='asc';th.dataset.dir=up?'asc':'desc';
const key=r=>{const k=r.children[i].dataset.key;return k===''?null:(isNaN(k)?k:parseFloat(k));};
[...b.rows].sort((x,y)=>{const a=key(x),c=key(y);if(a===null)return 1;if(c===null)return -1;
return (a<c?-1:a>c?1:0)*(up?1:-1);}).forEach(r=>b.appendChild(r));}"""
"""Sorting of the cores table by a column (inline: the report works offline, no external request)."""

STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f3f3f3}
.bar{display:inline-block;height:.8em;background:#b5523b}"""


def cohort_report_html(results: Sequence[PredictionRow], scheme: IntervalScheme, model: str,
                       folder: Path | None = None) -> str:
    """The report page for ``results`` (``folder``: where the page and the per-core files lie)."""
    method = results[0].method if results else "-"
    n_undef = sum(r.proportion is None for r in results)
    n_review = sum(near_cut_off(r.proportion) for r in results)
    intro = (f"<p>Model <code>{html.escape(model)}</code>, method <b>{html.escape(method)}</b>, "
             f"{len(results)} core(s); {n_undef} with TPS undefined (no tumour cells found), "
             f"{n_review} within {int(100 * NEAR_CUT_OFF)} % of a clinical cut-off (1 %, 50 %).</p>"
             "<p>Estimates are a research tool's output, not a diagnosis: review the figures.</p>")
    body = (intro + _distribution(results, scheme) + _histogram(results) + _agreement(results, scheme)
            + _exact_agreement(results) + _cores(results, folder))
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>maskllp report</title>"
            f"<style>{STYLE}</style><script>{SORT_SCRIPT}</script></head><body><h1>maskllp: TPS report</h1>"
            f"{body}</body></html>\n")


def write_cohort_report(path: str | Path, results: Sequence[PredictionRow], scheme: IntervalScheme,
                        model: str) -> Path:
    """Write :func:`cohort_report_html` to ``path`` atomically."""
    write_text_atomic(path, cohort_report_html(results, scheme, model, Path(path).parent))
    return Path(path)
