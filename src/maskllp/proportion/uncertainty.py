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
(:func:`fit_range_temperature`). The point estimate (the count of logit > 0) does not change.

Even tempered, that range knows only the calls, not stage 1's errors (non-tumour cells counted) nor
a bias of the calls shared by all cells of a core. So every method's range is then widened by a
split-conformal margin m from its validation cores (:func:`interval_margin`, the interval labels as
the only truth): m is the ``level`` quantile of how far the validation cores' ranges fell from their
labelled intervals, and [low - m, high + m] meets the true interval of at least ``level`` of new
cores like the validation ones. The range before widening is, per method: the tempered count range
(cell methods), the estimate itself (map methods: r -+ m), the predicted interval (Class, O-Reg).
Det learns from no interval label and keeps its Poisson-binomial range unwidened. Whether the ranges
hold their level on cores with a known TPS is measured by ``benchmarks/calibration.py`` and
``benchmarks/range_coverage.py`` (docs/stage2.md).
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


def distance_to_interval(low: float, high: float, interval: int, scheme: IntervalScheme) -> float:
    """How far the range [``low``, ``high``] (``low == high``: a point estimate) lies from the
    labelled interval (0 when they meet), in TPS units."""
    a, b = float(scheme.boundaries[interval]), float(scheme.boundaries[interval + 1])
    return max(a - high, 0.0, low - b)


def widen_range(tps_range: tuple[float, float], margin: float | None) -> tuple[float, float]:
    """(low - margin, high + margin) within [0, 1]; unchanged for ``margin`` None."""
    low, high = tps_range
    if margin is None:
        return low, high
    return max(0.0, low - margin), min(1.0, high + margin)


def interval_margin(lows: np.ndarray, highs: np.ndarray, intervals: np.ndarray, scheme: IntervalScheme,
                    level: float = RANGE_LEVEL) -> float | None:
    """The split-conformal margin m of a method from its validation cores: (n,) ranges [low, high]
    of their estimates (a point estimate: low == high; NaN: undefined, left out) and (n,) labelled
    intervals -> the ceil((n + 1) level)-th smallest distance of a range to its labelled interval
    (:func:`distance_to_interval`). For a new core exchangeable with them, [low - m, high + m] meets
    its true interval with probability >= ``level``, whatever the ranges were made from.
    1.0 (the whole range: nothing can be said) when n is too small (n < level / (1 - level));
    None without any validation core.

    >>> from maskllp.intervals import scheme_from_boundaries
    >>> s = scheme_from_boundaries("two", [0.0, 0.5, 1.0])
    >>> r = np.array([0.2, 0.7, 0.55, 0.45] * 3)
    >>> round(interval_margin(r, r, np.array([0, 0, 1, 1] * 3), s, 0.75), 6)
    0.2
    """
    lo, hi = np.asarray(lows, np.float64), np.asarray(highs, np.float64)
    k = np.asarray(intervals, np.int64)
    keep = np.isfinite(lo) & np.isfinite(hi)
    if not keep.any():
        return None
    d = np.sort([distance_to_interval(float(a), float(b), int(i), scheme)
                 for a, b, i in zip(lo[keep], hi[keep], k[keep], strict=True)])
    rank = math.ceil((len(d) + 1) * level)
    return 1.0 if rank > len(d) else float(d[rank - 1])
