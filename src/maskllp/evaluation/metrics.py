"""Metrics of Table 1 (scikit-learn) and, when exact truth is known, proportion errors.

Interval metrics: per-interval recall and precision, their macro means mRecall and mPrecision, mF1
(the mean of the per-interval F1 scores, scikit-learn's ``average="macro"``), all with
``labels=range(K)`` and ``zero_division=0``, and the confusion matrix.

**Undefined predictions** (no tumour in the mask, so no r_hat) are counted as **wrong**: they are
given an extra label K that is not scored, so they lower the recall (and F1) of their true interval
and the precision of no interval; the confusion matrix has a last column "undefined" for them. A
method cannot improve its table by declining to predict.

Proportion metrics (exact truth known, e.g. synthetic cohorts): mean absolute error over the cores
with a defined prediction, and agreement at the clinical cut-offs (1 % and 50 % by default): the
fraction of cores for which prediction and truth lie on the same side of the cut-off (``>= cut-off``
is "at or above", the intervals' convention); an undefined prediction counts as a disagreement.
Cores whose truth is undefined (no tumour cells) are left out of the proportion metrics.

Range coverage (methods that report a 90 % TPS range): the share of cores whose range meets their
labelled interval (what the conformal margin promises, checkable on any labelled cohort), the share
whose range holds the exact TPS (when it is known), and the mean width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from maskllp.intervals import IntervalScheme
from maskllp.predictions import UNDEFINED
from maskllp.proportion.uncertainty import distance_to_interval

CLINICAL_CUTOFFS = (0.01, 0.5)


@dataclass(frozen=True)
class IntervalMetrics:
    """Interval metrics over N cores of a K-interval scheme."""

    recall: np.ndarray
    """(K,) float64 per-interval recall."""
    precision: np.ndarray
    """(K,) float64 per-interval precision."""
    f1: np.ndarray
    """(K,) float64 per-interval F1."""
    confusion: np.ndarray
    """(K, K + 1) int64: rows true interval, columns predicted interval, last column undefined."""
    n: int
    n_undefined: int

    @property
    def mrecall(self) -> float:
        return float(self.recall.mean())

    @property
    def mprecision(self) -> float:
        return float(self.precision.mean())

    @property
    def mf1(self) -> float:
        return float(self.f1.mean())

    @property
    def support(self) -> np.ndarray:
        """(K,) int64 number of cores labelled with each interval."""
        return self.confusion.sum(axis=1)


def interval_metrics(
    true: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray, n_intervals: int
) -> IntervalMetrics:
    """Metrics of predicted intervals ((N,) int, ``UNDEFINED`` allowed) against true ones ((N,) int)."""
    t = np.asarray(true, dtype=np.int64).reshape(-1)
    p = np.asarray(predicted, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"{t.size} true and {p.size} predicted intervals")
    k = n_intervals
    if t.size and (t.min() < 0 or t.max() >= k):
        raise ValueError(f"true intervals must lie in [0, {k})")
    if p.size and (p.min() < UNDEFINED or p.max() >= k):
        raise ValueError(f"predicted intervals must lie in [0, {k}) or be UNDEFINED")
    scored = np.where(p == UNDEFINED, k, p)
    labels = list(range(k))
    if t.size:
        precision, recall, f1, _ = precision_recall_fscore_support(
            t, scored, labels=labels, average=None, zero_division=0
        )
        confusion = confusion_matrix(t, scored, labels=list(range(k + 1)))[:k]
    else:
        precision = recall = f1 = np.zeros(k)
        confusion = np.zeros((k, k + 1), dtype=np.int64)
    return IntervalMetrics(
        recall=np.asarray(recall, dtype=np.float64),
        precision=np.asarray(precision, dtype=np.float64),
        f1=np.asarray(f1, dtype=np.float64),
        confusion=np.asarray(confusion, dtype=np.int64),
        n=int(t.size),
        n_undefined=int((p == UNDEFINED).sum()),
    )


@dataclass(frozen=True)
class ProportionMetrics:
    """Errors of predicted proportions against exact truth."""

    n: int
    """Cores with exact, defined truth."""
    n_undefined: int
    """Of those, cores whose prediction is undefined."""
    mae: float | None
    """Mean absolute error over the cores with a defined prediction (None if there is none)."""
    agreement: dict[float, float]
    """Cut-off -> fraction of the ``n`` cores on the same side of it as the truth."""


def proportion_metrics(
    true: Sequence[float | None],
    predicted: Sequence[float | None],
    cutoffs: Sequence[float] = CLINICAL_CUTOFFS,
) -> ProportionMetrics | None:
    """Proportion errors; None when no core has exact, defined truth. ``None`` = unknown/undefined."""
    if len(true) != len(predicted):
        raise ValueError(f"{len(true)} true and {len(predicted)} predicted proportions")
    pairs = [(t, p) for t, p in zip(true, predicted, strict=True) if t is not None]
    if not pairs:
        return None
    t = np.array([a for a, _ in pairs], dtype=np.float64)
    defined = np.array([b is not None for _, b in pairs])
    p = np.array([b if b is not None else 0.0 for _, b in pairs], dtype=np.float64)
    mae = float(np.abs(p - t)[defined].mean()) if defined.any() else None
    agreement = {
        float(c): float(np.mean(defined & ((p >= c) == (t >= c)))) for c in cutoffs
    }
    return ProportionMetrics(n=len(pairs), n_undefined=int((~defined).sum()), mae=mae,
                             agreement=agreement)


@dataclass(frozen=True)
class RangeCoverage:
    """How often a method's reported TPS ranges held what they claim."""

    n: int
    """Cores with a range (a defined estimate) and a labelled interval."""
    meets_label: float
    """Fraction of them whose range meets the labelled interval."""
    n_exact: int
    """Of those, cores whose exact TPS is known."""
    holds_exact: float | None
    """Fraction of the ``n_exact`` cores whose range holds the exact TPS (None when ``n_exact`` is 0)."""
    mean_width: float
    """Mean high - low, in TPS units."""


def range_coverage(ranges: Sequence[tuple[float, float] | None], intervals: Sequence[int],
                   exact: Sequence[float | None], scheme: IntervalScheme) -> RangeCoverage | None:
    """Coverage of the ranges (one per core, None: no range) against the labelled intervals and, where
    known, the exact proportions; None when no core has a range."""
    if not len(ranges) == len(intervals) == len(exact):
        raise ValueError(f"{len(ranges)} ranges, {len(intervals)} intervals, {len(exact)} exact values")
    rows = [(r, k, t) for r, k, t in zip(ranges, intervals, exact, strict=True) if r is not None]
    if not rows:
        return None
    meets = [distance_to_interval(lo, hi, k, scheme) <= 1e-9 for (lo, hi), k, _ in rows]
    held = [lo - 1e-9 <= t <= hi + 1e-9 for (lo, hi), _, t in rows if t is not None]
    return RangeCoverage(len(rows), float(np.mean(meets)), len(held),
                         float(np.mean(held)) if held else None,
                         float(np.mean([hi - lo for (lo, hi), _, _ in rows])))
