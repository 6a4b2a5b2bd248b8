"""The TPS range from per-cell probabilities, checked on hand-computed distributions."""

from __future__ import annotations

import numpy as np
import pytest

from maskllp.proportion.uncertainty import (
    count_interval,
    poisson_binomial_pmf,
    straddled_cut_offs,
    tps_interval,
)


def test_pmf_by_hand():
    # two cells, p = 0.5 and 0.2: P(0) = 0.4, P(1) = 0.5, P(2) = 0.1
    assert np.allclose(poisson_binomial_pmf(np.array([0.5, 0.2])), [0.4, 0.5, 0.1])
    pmf = poisson_binomial_pmf(np.full(10, 0.3))  # equal p: the binomial
    from math import comb

    assert np.allclose(pmf, [comb(10, k) * 0.3 ** k * 0.7 ** (10 - k) for k in range(11)])


def test_certain_calls_give_a_point_and_uncertain_ones_a_range():
    assert tps_interval(np.array([1.0, 1.0, 0.0, 0.0])) == (0.5, 0.5)
    low, high = tps_interval(np.full(100, 0.5))
    assert 0.40 <= low < 0.5 < high <= 0.60  # binomial(100, 0.5): 5 % / 95 % near 42 / 58
    assert tps_interval(np.array([np.nan, np.nan])) is None  # no tumour cell: undefined


def test_the_interval_holds_its_level_for_calibrated_probabilities():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        p = rng.beta(0.5, 2.0, size=rng.integers(20, 200))
        k = (rng.random(len(p)) < p).sum()  # the true count when each p is the truth
        low, high = count_interval(p, 0.9)
        hits += low <= k <= high
    assert 0.87 <= hits / 400 <= 0.97


def test_the_normal_approximation_agrees_with_the_exact_count_for_many_cells(monkeypatch):
    import maskllp.proportion.uncertainty as u

    p = np.random.default_rng(1).uniform(0, 0.3, 3000)
    exact = count_interval(p)
    monkeypatch.setattr(u, "EXACT_UP_TO", 10)
    approx = count_interval(p)
    assert abs(approx[0] - exact[0]) <= 2 and abs(approx[1] - exact[1]) <= 2


@pytest.mark.parametrize("low, high, cuts", [(0.002, 0.03, [0.01]), (0.4, 0.6, [0.5]), (0.02, 0.3, []),
                                             (0.0, 0.6, [0.01, 0.5]), (0.01, 0.02, [])])
def test_straddled_cut_offs(low, high, cuts):
    assert straddled_cut_offs(low, high) == cuts


def test_interval_probability_by_hand():
    from maskllp.intervals import PAPER_FIVE
    from maskllp.proportion.uncertainty import interval_probability

    # two cells at p = 0.5: K = 0, 1, 2 with 1/4, 1/2, 1/4; TPS 0 is in '0-1 %', 0.5 starts
    # '50-75 %', 1.0 is in '75-100 %'
    p = np.array([0.5, 0.5])
    assert interval_probability(p, 0, PAPER_FIVE) == pytest.approx(0.25)
    assert interval_probability(p, 3, PAPER_FIVE) == pytest.approx(0.5)
    assert interval_probability(p, 4, PAPER_FIVE) == pytest.approx(0.25)


def test_the_temperature_undoes_an_over_confident_network():
    from maskllp.intervals import PAPER_FIVE
    from maskllp.proportion.uncertainty import fit_range_temperature

    rng = np.random.default_rng(3)
    logits, intervals = [], []
    for _ in range(150):
        true_logit = rng.normal(-1.0, 1.5, size=rng.integers(10, 60))
        k = (rng.random(len(true_logit)) < 1 / (1 + np.exp(-true_logit))).sum()
        logits.append(4.0 * true_logit)  # the network's logits: four times too sure
        intervals.append(int(PAPER_FIVE.index_of(k / len(true_logit))))
    t = fit_range_temperature(logits, intervals, PAPER_FIVE)
    assert 2.0 <= t <= 8.0
    assert fit_range_temperature([], [], PAPER_FIVE) == 1.0


def test_the_interval_margin_is_the_conformal_quantile_of_the_distances_to_the_labels() -> None:
    """Distances by hand (paper5: 0-1, 1-25, 25-50, 50-75, 75-100 %): 0.30 in '1-25 %' is 0.05 out,
    0.005 in '1-25 %' 0.005 out, 0.9 in '25-50 %' 0.4 out; inside, 0."""
    from maskllp.intervals import PAPER_FIVE
    from maskllp.proportion.uncertainty import distance_to_interval, interval_margin

    assert distance_to_interval(0.30, 0.30, 1, PAPER_FIVE) == pytest.approx(0.05)
    assert distance_to_interval(0.005, 0.005, 1, PAPER_FIVE) == pytest.approx(0.005)
    assert distance_to_interval(0.9, 0.9, 2, PAPER_FIVE) == pytest.approx(0.4)
    assert distance_to_interval(0.6, 0.6, 3, PAPER_FIVE) == 0.0
    # 9 cores inside their interval and one 0.4 out: n = 10, rank ceil(11 * 0.9) = 10, the largest
    r = np.array([0.005] + [0.1] * 8 + [0.9])
    k = np.array([0] + [1] * 8 + [2])
    assert interval_margin(r, r, k, PAPER_FIVE, 0.9) == pytest.approx(0.4)
    # 19 more inside: n = 29, rank ceil(30 * 0.9) = 27 of 29, a zero
    r2, k2 = np.concatenate([r, [0.1] * 19]), np.concatenate([k, [1] * 19])
    assert interval_margin(r2, r2, k2, PAPER_FIVE, 0.9) == 0.0
    assert interval_margin(r[:8], r[:8], k[:8], PAPER_FIVE, 0.9) == 1.0  # n = 8 < 9: nothing can be said
    assert interval_margin(np.array([np.nan]), np.array([np.nan]), np.array([1]), PAPER_FIVE, 0.9) is None
    r3 = np.append(r, np.nan)
    assert interval_margin(r3, r3, np.append(k, 4), PAPER_FIVE, 0.9) == pytest.approx(0.4)


def test_a_range_is_as_far_from_an_interval_as_its_nearer_end() -> None:
    """Ranges by hand against paper5's '25-50 %': [0.6, 0.7] is 0.1 above, [0.1, 0.2] 0.05 below,
    [0.2, 0.3] and [0.1, 0.9] meet it; the widened range stays inside [0, 1]."""
    from maskllp.intervals import PAPER_FIVE
    from maskllp.proportion.uncertainty import distance_to_interval, interval_margin, widen_range

    assert distance_to_interval(0.6, 0.7, 2, PAPER_FIVE) == pytest.approx(0.1)
    assert distance_to_interval(0.1, 0.2, 2, PAPER_FIVE) == pytest.approx(0.05)
    assert distance_to_interval(0.2, 0.3, 2, PAPER_FIVE) == 0.0
    assert distance_to_interval(0.1, 0.9, 2, PAPER_FIVE) == 0.0
    # ten cores: nine ranges meet '25-50 %', one is 0.1 above; rank 10 of 10: the margin is 0.1
    lows, highs = np.array([0.3] * 9 + [0.6]), np.array([0.4] * 9 + [0.7])
    assert interval_margin(lows, highs, np.full(10, 2), PAPER_FIVE, 0.9) == pytest.approx(0.1)
    assert widen_range((0.02, 0.97), 0.05) == pytest.approx((0.0, 1.0))
    assert widen_range((0.2, 0.3), 0.05) == pytest.approx((0.15, 0.35))
    assert widen_range((0.2, 0.3), None) == (0.2, 0.3)
