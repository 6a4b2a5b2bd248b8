"""Interval and proportion metrics against hand-counted values; undefined predictions count as wrong."""

from __future__ import annotations

import numpy as np
import pytest

from maskllp.evaluation.metrics import UNDEFINED, interval_metrics, proportion_metrics


def test_interval_metrics_by_hand() -> None:
    true = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 2, 2]
    m = interval_metrics(true, pred, 3)
    # recall: 2/3, 1/2, 1/1; precision: 2/2, 1/2, 1/2; F1: 0.8, 0.5, 2/3
    assert m.recall.tolist() == pytest.approx([2 / 3, 0.5, 1.0])
    assert m.precision.tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert m.f1.tolist() == pytest.approx([0.8, 0.5, 2 / 3])
    assert m.mrecall == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert m.mprecision == pytest.approx(2 / 3)
    assert m.mf1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m.confusion.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0]]
    assert m.n == 6 and m.n_undefined == 0 and m.support.tolist() == [3, 2, 1]


def test_undefined_predictions_lower_recall_not_precision() -> None:
    m = interval_metrics([0, 0, 1, 1], [0, UNDEFINED, 1, 1], 2)
    assert m.recall.tolist() == pytest.approx([0.5, 1.0])
    assert m.precision.tolist() == pytest.approx([1.0, 1.0])
    assert m.confusion.tolist() == [[1, 0, 1], [0, 2, 0]]
    assert m.n_undefined == 1


def test_absent_interval_scores_zero_not_nan() -> None:
    m = interval_metrics([0, 0], [0, 0], 3)
    assert m.recall.tolist() == [1.0, 0.0, 0.0] and np.isfinite(m.mf1)


def test_bad_interval_indices_are_refused() -> None:
    with pytest.raises(ValueError):
        interval_metrics([0, 3], [0, 0], 3)
    with pytest.raises(ValueError):
        interval_metrics([0, 1], [0, -2], 3)


def test_proportion_metrics_by_hand() -> None:
    true = [0.005, 0.3, 0.6, None, 0.02]
    pred = [0.02, 0.2, 0.45, 0.5, None]
    p = proportion_metrics(true, pred)
    # known truth: 4 cores, one prediction undefined; MAE over 3: (0.015 + 0.1 + 0.15) / 3
    assert p.n == 4 and p.n_undefined == 1
    assert p.mae == pytest.approx(0.265 / 3)
    # 1 %: 0.005 vs 0.02 differ, 0.3 and 0.6 agree, undefined disagrees -> 2 / 4
    # 50 %: 0.005, 0.3 agree; 0.6 vs 0.45 differ; undefined disagrees -> 2 / 4
    assert p.agreement == {0.01: pytest.approx(0.5), 0.5: pytest.approx(0.5)}


def test_cutoff_is_inclusive_like_the_intervals() -> None:
    p = proportion_metrics([0.5, 0.01], [0.5, 0.01], cutoffs=(0.01, 0.5))
    assert p.agreement == {0.01: 1.0, 0.5: 1.0} and p.mae == 0.0


def test_no_exact_truth_gives_none() -> None:
    assert proportion_metrics([None, None], [0.1, None]) is None


def test_range_coverage_by_hand() -> None:
    """paper5 intervals. Core 1: [0, 0.02] meets '0-1 %' and holds 0.005; core 2: [0.3, 0.4] misses
    '1-25 %' (0.05 above) and holds no known TPS; core 3: [0.5, 0.7] meets '50-75 %' but not its
    exact 0.72; core 4: no range (left out)."""
    from maskllp.evaluation.metrics import range_coverage
    from maskllp.intervals import PAPER_FIVE

    cov = range_coverage([(0.0, 0.02), (0.3, 0.4), (0.5, 0.7), None], [0, 1, 3, 2], [0.005, None, 0.72, 0.3],
                         PAPER_FIVE)
    assert cov is not None and cov.n == 3 and cov.n_exact == 2
    assert cov.meets_label == pytest.approx(2 / 3) and cov.holds_exact == pytest.approx(0.5)
    assert cov.mean_width == pytest.approx((0.02 + 0.1 + 0.2) / 3)
    assert range_coverage([None], [0], [0.5], PAPER_FIVE) is None
    assert range_coverage([(0.0, 1.0)], [0], [None], PAPER_FIVE).holds_exact is None
