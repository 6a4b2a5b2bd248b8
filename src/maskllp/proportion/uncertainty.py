"""How sure a counted TPS is: an interval from the per-cell probabilities of the tumour cells.

A cell-level method (``ours-cells``, Det) calls each tumour cell positive when p(positive) > 0.5 and
counts the calls: TPS = K / N. Each call can be wrong with the probability the network gives it, so
the number of positive cells K is a sum of independent Bernoulli(p_i) draws: a Poisson-binomial
distribution. Its central ``level`` interval, divided by N, is the TPS range reported by
``predict``. It says how much the count could move if the uncertain calls went the other way; it does
not include stage 1's errors (non-tumour cells counted, tumour cells missed).

A network trained on bags is often over-confident: its wrong calls have p near 0 or 1, and the range
is too narrow. So the cell method tempers its probabilities for the range, p = sigmoid(logit / T),
with T chosen on its validation cores by the only truth they have, their interval labels: the T that
maximises the probability the Poisson-binomial gives to each core's labelled interval
(:func:`fit_range_temperature`). The point estimate (the count of logit > 0) does not change. Whether
the range holds its level on cores with a known TPS is measured by ``benchmarks/calibration.py``
(docs/stage2.md).
"""

from __future__ import annotations

import math

import numpy as np

from maskllp.intervals import IntervalScheme

RANGE_LEVEL = 0.9
"""Coverage of the TPS range ``predict`` reports."""

EXACT_UP_TO = 4000
"""Cells up to which the Poisson-binomial is computed exactly (O(N^2)); beyond, its normal
approximation (N large: the central limit theorem, with continuity correction)."""


def poisson_binomial_pmf(p: np.ndarray) -> np.ndarray:
    """(N + 1,) float64 P(K = k) for K the number of successes of independent Bernoulli(p_i).

    >>> poisson_binomial_pmf(np.array([0.5, 1.0])).tolist()
    [0.0, 0.5, 0.5]
    """
    pmf = np.zeros(len(p) + 1)
    pmf[0] = 1.0
    for i, q in enumerate(np.asarray(p, np.float64)):
        pmf[1: i + 2] = pmf[1: i + 2] * (1 - q) + pmf[: i + 1] * q
        pmf[0] *= 1 - q
    return pmf


def count_interval(p: np.ndarray, level: float = 0.9) -> tuple[int, int]:
    """(low, high) counts: the central ``level`` interval of the Poisson-binomial of ``p`` ((N,) in
    [0, 1]): P(K < low) <= (1 - level) / 2 and P(K > high) <= (1 - level) / 2."""
    p = np.clip(np.asarray(p, np.float64).ravel(), 0.0, 1.0)
    n, tail = len(p), (1.0 - level) / 2
    if n == 0:
        return 0, 0
    if n <= EXACT_UP_TO:
        cdf = np.cumsum(poisson_binomial_pmf(p))
        low = int(np.searchsorted(cdf, tail * (1 - 1e-12), side="right"))
        high = int(np.searchsorted(cdf, 1 - tail * (1 + 1e-12), side="left"))
        return low, min(high, n)
    from statistics import NormalDist

    mean, sd = float(p.sum()), math.sqrt(float((p * (1 - p)).sum()))
    z = NormalDist().inv_cdf(1 - tail)
    return max(0, math.floor(mean - z * sd)), min(n, math.ceil(mean + z * sd))


def tps_interval(p_positive: np.ndarray, level: float = 0.9) -> tuple[float, float] | None:
    """(low, high) TPS in [0, 1] from the p(positive) of a core's tumour cells ((N,), NaN entries
    ignored); None when there is no tumour cell (the TPS is undefined)."""
    p = np.asarray(p_positive, np.float64).ravel()
    p = p[np.isfinite(p)]
    if len(p) == 0:
        return None
    low, high = count_interval(p, level)
    return low / len(p), high / len(p)


TEMPERATURES = tuple(float(t) for t in np.geomspace(0.25, 32.0, 29))
"""The temperatures :func:`fit_range_temperature` tries."""


def interval_probability(p: np.ndarray, interval: int, scheme: IntervalScheme) -> float:
    """P(K / N lies in ``scheme``'s interval ``interval``) for K ~ Poisson-binomial(``p``), N = len(p)."""
    n = len(p)
    if n == 0:
        return 0.0
    pmf = poisson_binomial_pmf(p) if n <= EXACT_UP_TO else _normal_pmf(p)
    which = scheme.index_of(np.arange(n + 1) / n)
    return float(pmf[np.asarray(which) == interval].sum())


def _normal_pmf(p: np.ndarray) -> np.ndarray:
    from statistics import NormalDist

    mean, sd = float(p.sum()), max(math.sqrt(float((p * (1 - p)).sum())), 1e-9)
    dist = NormalDist(mean, sd)
    k = np.arange(len(p) + 1)
    edges = [dist.cdf(x) for x in np.concatenate([[-np.inf], k[:-1] + 0.5, [np.inf]])]
    return np.diff(np.asarray(edges))


def fit_range_temperature(logits: list[np.ndarray], intervals: list[int], scheme: IntervalScheme) -> float:
    """The temperature T (of :data:`TEMPERATURES`) that maximises sum_j log P(core j's count lands in
    its labelled interval) with p = sigmoid(logits_j / T), over cores with at least one tumour cell;
    1.0 when there is none."""
    from scipy.special import expit

    cores = [(np.asarray(z, np.float64), iv) for z, iv in zip(logits, intervals, strict=True) if len(z)]
    if not cores:
        return 1.0
    best, best_t = -math.inf, 1.0
    for t in TEMPERATURES:
        ll = sum(math.log(max(interval_probability(expit(z / t), iv, scheme), 1e-12)) for z, iv in cores)
        if ll > best + 1e-12:
            best, best_t = ll, t
    return best_t


CLINICAL_CUT_OFFS = (0.01, 0.5)
"""PD-L1 TPS cut-offs that change treatment (>= 1 %, >= 50 %)."""


def straddled_cut_offs(low: float, high: float, cut_offs: tuple[float, ...] = CLINICAL_CUT_OFFS
                       ) -> list[float]:
    """The cut-offs the interval [low, high] lies across (the TPS could be on either side)."""
    return [c for c in cut_offs if low < c <= high]
