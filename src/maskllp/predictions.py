"""What every method of Table 1 predicts for a core, in one type shared by all of them.

A :class:`ProportionPrediction` is the proportion estimate (``None``: undefined, e.g. no tumour cell
in the mask), its interval index, and the method's evidence s_p / s_n when it has any (the masked
sums of the map methods, the positive / negative cell counts of Det). Interval-only methods (Class,
O-Reg) give the midpoint of their interval as the proportion.

A :class:`PredictionRow` is how a prediction is reported, by ``maskllp predict`` and ``maskllp cv``
alike: one definition of the columns of ``predictions.csv``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

UNDEFINED = -1
"""Predicted interval index of a core whose proportion is undefined."""


@dataclass(frozen=True)
class ProportionPrediction:
    """One core's prediction (``None``: undefined or not produced by the method)."""

    proportion: float | None
    interval: int | None
    s_p: float | None = None
    s_n: float | None = None
    tps_range: tuple[float, float] | None = None
    """(low, high) 90 % range of the TPS (:mod:`maskllp.proportion.uncertainty`); None where the
    method gives none or the proportion is undefined."""


ProportionKind = Literal["masked ratio", "interval midpoint", "cell count", "cell mean"]

PREDICTION_COLUMNS = ("name", "image", "patient", "method", "fold", "label", "truth", "proportion", "percent",
                      "proportion_low", "proportion_high", "interval", "proportion_kind", "s_p", "s_n",
                      "cells", "tumour_cells", "positive_cells", "negative_cells", "tumour_area_fraction",
                      "mpp", "flags", "note")
"""The columns of every ``predictions.csv`` (``maskllp predict`` and ``maskllp cv``), in order."""


@dataclass
class PredictionRow:
    """One core's prediction as the tool reports it: a row of ``predictions.csv``, the content of
    ``<name>.tps.json``, a row of the report. Fields a run does not know stay None (empty in CSV)."""

    name: str
    """The core's name (its image file's stem, made unique)."""
    image: str
    method: str
    proportion: float | None
    """TPS estimate in [0, 1]; None = undefined (see ``note``)."""
    interval: str | None
    proportion_kind: ProportionKind
    """``masked ratio`` (s_p / (s_p + s_n)), ``interval midpoint`` (Class, O-Reg), ``cell count``
    (Det) or ``cell mean`` (mean p(positive) of the tumour cells, ``ours-cells``)."""
    s_p: float | None = None
    s_n: float | None = None
    cells: int | None = None
    tumour_cells: int | None = None
    positive_cells: int | None = None
    negative_cells: int | None = None
    """Tumour cells called positive / negative, as the cells GeoJSON classes them, for the methods
    whose TPS is their count (``ours-cells``, Det); None for the others."""
    tumour_area_fraction: float | None = None
    """Fraction of the core's pixels inside the tumour mask M."""
    mpp: float | None = None
    note: str | None = None
    label: str | None = None
    """The core's label as the manifest gives it, when there is one."""
    patient: str | None = None
    fold: int | None = None
    """The cross-validation fold that held the core out (``maskllp cv`` only)."""
    truth: float | None = None
    """The exact proportion when known (synthetic truth, an exact label)."""
    proportion_low: float | None = None
    proportion_high: float | None = None
    """The 90 % range of the TPS (:mod:`maskllp.proportion.uncertainty`), ``ProportionPrediction.tps_range``;
    None where the method gives none."""
    flags: str | None = None
    """Why a pathologist should look at this core (``; ``-separated), e.g. ``fewer than 100 tumour
    cells``, ``no DAB signal``; None: nothing flagged."""

    @property
    def percent(self) -> float | None:
        return None if self.proportion is None else round(100 * self.proportion, 2)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "percent": self.percent}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def predictions_csv(rows: Sequence[PredictionRow]) -> str:
    """``predictions.csv``: the columns of :data:`PREDICTION_COLUMNS`, one row per prediction, empty
    cells for undefined or unknown values, numbers with 6 significant digits."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(PREDICTION_COLUMNS)
    for r in rows:
        row = r.to_json()
        writer.writerow([_cell(row[c]) for c in PREDICTION_COLUMNS])
    return buf.getvalue()
