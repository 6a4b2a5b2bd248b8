"""The losses of Table 1, each a small ``nn.Module`` called as ``loss(prediction, interval)``.

``interval`` is a (N,) int64 tensor of interval indices (the labels). ``prediction`` is what the
method's head gives: the estimated proportion ``r_hat`` (N,) float in [0, 1] for the map methods,
(N, K) logits for ``Class`` and (N, K - 1) cumulative logits for ``O-Reg``. Every loss is a mean over
the N cores of a batch.

The proportion-loss family is one module, :class:`FocalProportionLoss`:

    loss_i = w[k_i] * |r_i - r_hat_i| ** gamma[k_i] * KL((r_i, 1 - r_i) || (r_hat_i, 1 - r_hat_i))

with ``k_i`` the labelled interval and ``r_i`` its midpoint (0.005 for '0-1 %'). The paper's Eq. 1
carries a spurious leading minus; this is the intended, non-negative loss. The four Table 1 variants
differ only by ``w`` and ``gamma`` (see the factories below):

* Prop: w = 1, gamma = 0 (the plain proportion loss, a KL divergence);
* WProp: w_k proportional to 1 / width_k, normalised to mean 1 over the intervals, gamma = 0;
* FocalProp: w = 1, gamma = 2 for every interval;
* Ours (weighted focal proportion loss): w = 1, gamma = 0 for '0-1 %' and 2 for the others.

``r_hat`` is clamped to [eps, 1 - eps] inside the KL, so the loss and its gradient stay finite for
r = 0.005 and r_hat at 0 or 1, and at r_hat == r (|r - r_hat| ** 0 is 1 and ** 2 is smooth).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from maskllp.config.proportion import LossConfig
from maskllp.intervals import IntervalScheme

_TINY = 1e-12


def _per_interval(values: Sequence[float] | torch.Tensor, k: int, what: str) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float32).flatten()
    if t.numel() != k:
        raise ValueError(f"{what}: need one value per interval ({k}), got {t.numel()}")
    return t


def binary_kl(target: torch.Tensor, r_hat: torch.Tensor, eps: float) -> torch.Tensor:
    """KL((r, 1 - r) || (r_hat, 1 - r_hat)) per core, (N,) float; r_hat clamped to [eps, 1 - eps].

    ``target`` (N,) in [0, 1] (0 and 1 allowed: 0 log 0 = 0), ``r_hat`` (N,) in [0, 1].
    """
    q = r_hat.clamp(eps, 1.0 - eps)
    p = target.to(q.dtype)
    return (torch.special.xlogy(p, p) - p * torch.log(q)
            + torch.special.xlogy(1 - p, 1 - p) - (1 - p) * torch.log1p(-q))


class FocalProportionLoss(nn.Module):
    """``w[k] * |r - r_hat| ** gamma[k] * KL(r || r_hat)``, r the midpoint of interval k; batch mean.

    ``midpoints``, ``gammas`` and ``weights`` hold one value per interval. With gamma 0 and weight 1
    everywhere this is the plain proportion loss (Prop).
    """

    midpoints: torch.Tensor
    gammas: torch.Tensor
    weights: torch.Tensor

    def __init__(
        self,
        midpoints: Sequence[float],
        gammas: Sequence[float] | None = None,
        weights: Sequence[float] | None = None,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        k = len(midpoints)
        self.register_buffer("midpoints", _per_interval(midpoints, k, "midpoints"))
        self.register_buffer("gammas", _per_interval([0.0] * k if gammas is None else gammas, k, "gammas"))
        self.register_buffer("weights", _per_interval([1.0] * k if weights is None else weights, k,
                                                      "interval weights"))
        self.eps = eps

    def per_core(self, r_hat: torch.Tensor, interval: torch.Tensor) -> torch.Tensor:
        """(N,) loss of each core (the batch mean of which :meth:`forward` returns)."""
        r = self.midpoints[interval]
        gamma = self.gammas[interval]
        # clamp_min keeps the gradient finite for 0 < gamma < 1 at r_hat == r; gamma 0 gives exactly 1
        focal = (r - r_hat).abs().clamp_min(_TINY) ** gamma
        return self.weights[interval] * focal * binary_kl(r, r_hat, self.eps)

    def forward(self, r_hat: torch.Tensor, interval: torch.Tensor) -> torch.Tensor:
        return self.per_core(r_hat, interval).mean()


def default_gammas(n_intervals: int) -> list[float]:
    """The paper's gammas: 0 for the first interval ('0-1 %'), 2 for the others."""
    return [0.0] + [2.0] * (n_intervals - 1)


def inverse_width_weights(scheme: IntervalScheme) -> list[float]:
    """WProp weights: 1 / width of each interval, normalised to mean 1 over the intervals.

    For the paper's five intervals: 4.30 for '0-1 %' and 0.179, 0.172, 0.172, 0.172 for the others.
    """
    inv = 1.0 / scheme.widths
    return [float(v) for v in inv / inv.mean()]


def proportion_loss(scheme: IntervalScheme, cfg: LossConfig) -> FocalProportionLoss:
    """Prop: the KL proportion loss to the interval midpoint."""
    return FocalProportionLoss(scheme.midpoints.tolist(), eps=cfg.eps)


def weighted_proportion_loss(scheme: IntervalScheme, cfg: LossConfig) -> FocalProportionLoss:
    """WProp: the proportion loss weighted per interval, more for narrower intervals."""
    weights = cfg.interval_weights if cfg.interval_weights is not None else inverse_width_weights(scheme)
    return FocalProportionLoss(scheme.midpoints.tolist(), weights=weights, eps=cfg.eps)


def focal_proportion_loss(scheme: IntervalScheme, cfg: LossConfig) -> FocalProportionLoss:
    """FocalProp: the focal proportion loss with one gamma (default 2) for every interval."""
    return FocalProportionLoss(scheme.midpoints.tolist(), gammas=[cfg.focal_gamma] * len(scheme),
                               eps=cfg.eps)


def weighted_focal_proportion_loss(scheme: IntervalScheme, cfg: LossConfig) -> FocalProportionLoss:
    """Ours: the weighted focal proportion loss, gamma per interval (default 0, 2, 2, ...)."""
    gammas = cfg.gammas if cfg.gammas is not None else default_gammas(len(scheme))
    return FocalProportionLoss(scheme.midpoints.tolist(), gammas=gammas, eps=cfg.eps)


class ListNetLoss(nn.Module):
    """ListNet (Cao et al. 2007) over the cores of a batch: top-one probabilities, cross-entropy.

    Scores are log-odds, ``log(r / (1 - r))``: for the truth, of the interval midpoints; for the
    prediction, of the clamped ``r_hat`` (for the map methods ``log s_p - log s_n``). Then
    ``loss = -sum_i softmax(true)_i * log softmax(pred)_i``. A batch of one core gives 0.
    """

    midpoints: torch.Tensor

    def __init__(self, midpoints: Sequence[float], eps: float = 1e-6) -> None:
        super().__init__()
        self.register_buffer("midpoints", _per_interval(midpoints, len(midpoints), "midpoints"))
        self.eps = eps

    def forward(self, r_hat: torch.Tensor, interval: torch.Tensor) -> torch.Tensor:
        if r_hat.numel() < 2:
            return r_hat.sum() * 0.0
        true_scores = torch.logit(self.midpoints[interval].to(r_hat.dtype), eps=self.eps)
        pred_scores = torch.logit(r_hat.clamp(self.eps, 1.0 - self.eps))
        return -(F.softmax(true_scores, dim=0) * F.log_softmax(pred_scores, dim=0)).sum()


class WeightedSumLoss(nn.Module):
    """``sum_j weight_j * term_j(prediction, interval)`` (e.g. WProp + ListNet)."""

    def __init__(self, terms: Sequence[tuple[float, nn.Module]]) -> None:
        super().__init__()
        self.term_weights = [float(w) for w, _ in terms]
        self.terms = nn.ModuleList([t for _, t in terms])

    def forward(self, prediction: torch.Tensor, interval: torch.Tensor) -> torch.Tensor:
        total = prediction.sum() * 0.0
        for w, term in zip(self.term_weights, self.terms, strict=True):
            total = total + w * term(prediction, interval)
        return total


def wprop_listnet_loss(scheme: IntervalScheme, cfg: LossConfig) -> WeightedSumLoss:
    """WProp + ListNet: the weighted proportion loss plus ``listnet_weight`` times ListNet."""
    return WeightedSumLoss([(1.0, weighted_proportion_loss(scheme, cfg)),
                            (cfg.listnet_weight, ListNetLoss(scheme.midpoints.tolist(), cfg.eps))])


class IntervalLoss(nn.Module):
    """LPI interval loss (Bortsova et al. 2018): squared distance from r_hat to the labelled interval.

    ``loss_i = (max(0, low_i - r_hat_i) + max(0, r_hat_i - high_i)) ** 2``: zero inside
    [low, high], growing quadratically outside; batch mean.
    """

    lows: torch.Tensor
    highs: torch.Tensor

    def __init__(self, lows: Sequence[float], highs: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("lows", _per_interval(lows, len(lows), "lows"))
        self.register_buffer("highs", _per_interval(highs, len(lows), "highs"))

    def forward(self, r_hat: torch.Tensor, interval: torch.Tensor) -> torch.Tensor:
        outside = F.relu(self.lows[interval] - r_hat) + F.relu(r_hat - self.highs[interval])
        return (outside * outside).mean()


def interval_loss(scheme: IntervalScheme, cfg: LossConfig) -> IntervalLoss:
    """LPI: the interval loss with the scheme's bounds."""
    b = scheme.boundaries
    return IntervalLoss(b[:-1].tolist(), b[1:].tolist())


class IntervalCrossEntropy(nn.Module):
    """Class: K-way cross-entropy of (N, K) logits against the interval index."""

    def forward(self, logits: torch.Tensor, interval: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, interval)


class CumulativeBCELoss(nn.Module):
    """O-Reg (Cheng et al. 2008): (N, K - 1) logits; output j is trained towards [interval > j].

    Interval 2 of 5 has targets [1, 1, 0, 0]. Binary cross-entropy summed over the K - 1 outputs,
    averaged over the batch.
    """

    def forward(self, logits: torch.Tensor, interval: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(
            logits, ordinal_targets(interval, logits.shape[1]).to(logits.dtype), reduction="sum"
        ) / logits.shape[0]


def ordinal_targets(interval: torch.Tensor, n_outputs: int) -> torch.Tensor:
    """(N,) interval indices -> (N, n_outputs) float {0, 1}, row k = [1] * k + [0] * (n_outputs - k)."""
    j = torch.arange(n_outputs, device=interval.device)
    return (interval.unsqueeze(1) > j.unsqueeze(0)).float()


# ============================================================================ clicked cells (map methods)
class ClickShareLoss(nn.Module):
    """Cross-entropy of the positive share F_p / (F_p + F_n) of the maps at clicked tumour cells.

    Called as ``loss(maps, clicks)``: ``maps`` (N, 2, h, w) >= 0 (F_p, F_n on the map grid);
    ``clicks`` (N, 2, H, W) float, the number of clicked positive (channel 0) and negative (channel 1)
    tumour cells at each input pixel (:func:`maskllp.proportion.inputs.click_counts`). The clicks are
    counted per map cell (H, W multiples of h, w: an exact count); the loss is

        -(sum c_p log share + sum c_n log(1 - share)) / (sum c_p + sum c_n)

    over every map cell of the batch, the share clamped to [eps, 1 - eps]: the mean cross-entropy
    per clicked cell. 0 (with a gradient) for a batch without a click. The share is computed in
    float32 whatever the maps' dtype.
    """

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, maps: torch.Tensor, clicks: torch.Tensor) -> torch.Tensor:
        h, w = maps.shape[-2:]
        scale = clicks.shape[-2] * clicks.shape[-1] / (h * w)
        counts = F.adaptive_avg_pool2d(clicks.float(), (h, w)) * scale
        total = counts.sum()
        if float(total) <= 0:
            return maps.float().sum() * 0.0
        m = maps.float()
        share = (m[:, 0] / (m[:, 0] + m[:, 1]).clamp_min(_TINY)).clamp(self.eps, 1.0 - self.eps)
        ce = -(counts[:, 0] * torch.log(share) + counts[:, 1] * torch.log1p(-share))
        return ce.sum() / total


# ============================================================================ bag losses (cell methods)
class BagLoss(nn.Module):
    """A loss of the cell-level methods over bags of cells, called as ``loss(logits, bag, interval)``:
    ``logits`` (M,) of p(positive) of every cell of the batch, ``bag`` (M,) int64 index of each cell's
    core in [0, B), ``interval`` (B,) int64 labelled interval (-1: unlabelled). Mean over the labelled
    cores with at least one cell; 0 (with a gradient) when there is none."""

    def per_bag(self, logits: torch.Tensor, bag: torch.Tensor, interval: torch.Tensor) -> torch.Tensor:
        """(B,) loss of each core (only the labelled cores with a cell are meaningful)."""
        raise NotImplementedError

    def possible(self, counts: torch.Tensor, interval: torch.Tensor) -> torch.Tensor:
        """(B,) bool: whether a core of ``counts`` cells can reach its labelled interval at all."""
        return torch.ones_like(counts, dtype=torch.bool)

    def forward(self, logits: torch.Tensor, bag: torch.Tensor, interval: torch.Tensor) -> torch.Tensor:
        counts = torch.zeros(len(interval), dtype=torch.int64, device=bag.device).index_add(
            0, bag, torch.ones_like(bag))
        keep = (counts > 0) & (interval >= 0)
        keep = keep & self.possible(counts, interval.clamp_min(0))
        if not bool(keep.any()):
            return logits.sum() * 0.0
        return self.loss_of(logits, bag, interval.clamp_min(0), keep)

    def loss_of(self, logits: torch.Tensor, bag: torch.Tensor, interval: torch.Tensor, keep: torch.Tensor
                ) -> torch.Tensor:
        """The loss over the bags ``keep`` (B,) bool selects (at least one): the mean of :meth:`per_bag`."""
        return self.per_bag(logits, bag, interval)[keep].mean()


def bag_means(p: torch.Tensor, bag: torch.Tensor, n_bags: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``p`` (M,) over each bag: ``bag`` (M,) int64 in [0, n_bags). Returns (r_hat (B,),
    counts (B,)); an empty bag gets r_hat 0 (its count 0 says it is undefined)."""
    totals = torch.zeros(n_bags, dtype=p.dtype, device=p.device).index_add(0, bag, p)
    counts = torch.zeros(n_bags, dtype=p.dtype, device=p.device).index_add(0, bag, torch.ones_like(p))
    return totals / counts.clamp_min(1.0), counts


class BagMeanLoss(BagLoss):
    """A proportion loss of the map methods (``loss(r_hat, interval)``) applied to each bag's mean
    p(positive), r_hat = mean_i sigmoid(logit_i)."""

    def __init__(self, proportion_loss: nn.Module) -> None:
        super().__init__()
        self.proportion_loss = proportion_loss

    def loss_of(self, logits: torch.Tensor, bag: torch.Tensor, interval: torch.Tensor, keep: torch.Tensor
                ) -> torch.Tensor:
        r_hat, _ = bag_means(torch.sigmoid(logits), bag, len(interval))
        return self.proportion_loss(r_hat[keep], interval[keep])


_LOG_ZERO = -1e30
"""log(0) stand-in of the count recursion (finite, so that log-add-exp keeps finite gradients)."""


class CountIntervalLikelihood(BagLoss):
    """-log P(K / N lies in the labelled interval), K ~ Poisson-binomial(p_1 ... p_N) of a core's N cells.

    Each cell is positive with its p_i = sigmoid(logit_i), independently; K, the number of positive
    cells, then has the Poisson-binomial distribution, and the labelled interval [low, high) of the
    TPS is the event low <= K / N < high (the scheme's convention, the last interval closed). This is
    the likelihood of the interval label itself: unlike a proportion loss towards the interval's
    midpoint it does not pull a core labelled '1-25 %' towards 13 %, and it rewards confident calls
    (a count far inside the interval) over a cloud of p near the boundary, so the count of calls
    p > 0.5 (the TPS the cell method reports) agrees with what was learned.

    Exact for bags of up to ``exact_up_to`` cells (log-space recursion over the cells, O(N^2));
    beyond, the normal approximation of K with continuity correction (mean sum p, variance
    sum p(1 - p)).
    """

    boundaries: torch.Tensor

    def __init__(self, boundaries: Sequence[float], exact_up_to: int = 512) -> None:
        super().__init__()
        b = torch.as_tensor(boundaries, dtype=torch.float64).flatten()
        if b.numel() < 3 or not bool((b[1:] > b[:-1]).all()) or b[0] != 0 or b[-1] != 1:
            raise ValueError(f"boundaries must increase from 0 to 1, got {b.tolist()}")
        self.register_buffer("boundaries", b)
        self.exact_up_to = int(exact_up_to)

    def _count_in_interval(self, n: torch.Tensor, interval: torch.Tensor, k_max: int) -> torch.Tensor:
        """(B, k_max + 1) bool: count k of a bag of n cells gives a TPS k / n in the bag's interval."""
        k = torch.arange(k_max + 1, dtype=torch.float64, device=n.device)
        tps = k.unsqueeze(0) / n.to(torch.float64).clamp_min(1).unsqueeze(1)
        which = torch.bucketize(tps, self.boundaries[1:-1].to(tps.device), right=True)
        return (which == interval.unsqueeze(1)) & (k.unsqueeze(0) <= n.unsqueeze(1))

    def possible(self, counts: torch.Tensor, interval: torch.Tensor) -> torch.Tensor:
        """A core of 2 cells cannot be '25-50 %' (0, 50 or 100 %): such a label says nothing to learn
        from (stage 1 found too few cells), and the core is left out of the loss."""
        return self._count_in_interval(counts, interval, int(counts.max().clamp_min(1))).any(1)

    def per_bag(self, logits: torch.Tensor, bag: torch.Tensor, interval: torch.Tensor) -> torch.Tensor:
        n_bags = len(interval)
        z = logits.to(torch.float64)
        n = torch.zeros(n_bags, dtype=torch.int64, device=z.device).index_add(0, bag, torch.ones_like(bag))
        out = torch.zeros(n_bags, dtype=torch.float64, device=z.device)
        exact = (n > 0) & (n <= self.exact_up_to)
        if bool(exact.any()):
            out = out + torch.where(exact, self._exact_nll(z, bag, n, interval), 0.0)
        large = n > self.exact_up_to
        if bool(large.any()):
            out = out + torch.where(large, self._normal_nll(z, bag, n, interval), 0.0)
        return out.to(logits.dtype)

    def _exact_nll(self, z: torch.Tensor, bag: torch.Tensor, n: torch.Tensor, interval: torch.Tensor
                   ) -> torch.Tensor:
        n_small = torch.where(n <= self.exact_up_to, n, 0)
        n_bags, width = len(n), int(n_small.max())
        small = n_small[bag] > 0
        order = torch.argsort(bag[small], stable=True)
        zs, bs = z[small][order], bag[small][order]
        col = torch.arange(len(bs), device=z.device) - (torch.cumsum(n_small, 0) - n_small)[bs]
        # a padded (B, width) matrix of each bag's cells; padding cells are never positive
        log_p = torch.full((n_bags, width), _LOG_ZERO, dtype=z.dtype, device=z.device).index_put(
            (bs, col), F.logsigmoid(zs))
        log_q = torch.zeros((n_bags, width), dtype=z.dtype, device=z.device).index_put(
            (bs, col), F.logsigmoid(-zs))
        log_pmf = torch.full((n_bags, width + 1), _LOG_ZERO, dtype=z.dtype, device=z.device)
        log_pmf[:, 0] = 0.0
        floor = log_pmf[:, :1] * 0.0 + _LOG_ZERO
        for i in range(width):  # log P(K = k) after cell i: K stays (cell negative) or moves up by one
            log_pmf = torch.logaddexp(log_pmf + log_q[:, i: i + 1],
                                      torch.cat([floor, log_pmf[:, :-1]], 1) + log_p[:, i: i + 1])
        inside = self._count_in_interval(n, interval, width)
        return -torch.logsumexp(torch.where(inside, log_pmf, 2 * _LOG_ZERO), dim=1)

    def _normal_nll(self, z: torch.Tensor, bag: torch.Tensor, n: torch.Tensor, interval: torch.Tensor
                    ) -> torch.Tensor:
        p = torch.sigmoid(z)
        mean = torch.zeros(len(n), dtype=z.dtype, device=z.device).index_add(0, bag, p)
        var = torch.zeros(len(n), dtype=z.dtype, device=z.device).index_add(0, bag, p * (1 - p))
        sd = var.clamp_min(1e-6).sqrt()
        nf = n.to(z.dtype)
        low_tps, high_tps = self.boundaries[interval], self.boundaries[interval + 1]
        last = interval == len(self.boundaries) - 2
        # counts k with low <= k / n < high (k <= n in the last interval): k_lo = ceil(low n), k_hi
        k_lo = torch.ceil(low_tps * nf - 1e-9)
        k_hi = torch.where(last, nf, torch.ceil(high_tps * nf - 1e-9) - 1)
        a, b = (k_lo - 0.5 - mean) / sd, (k_hi + 0.5 - mean) / sd
        return -_log_normal_mass(a, b)


def _log_normal_mass(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(Phi(b) - Phi(a)) for a < b, stable in both tails (by symmetry on the upper one)."""
    upper = a > 0
    lo, hi = torch.where(upper, -b, a), torch.where(upper, -a, b)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    gap = (log_lo - log_hi).clamp_max(-1e-12)
    return log_hi + torch.log1p(-torch.exp(gap))


def count_interval_likelihood(scheme: IntervalScheme, cfg: LossConfig) -> CountIntervalLikelihood:
    """The cell methods' likelihood of the interval label under the Poisson-binomial count."""
    return CountIntervalLikelihood(scheme.boundaries.tolist())


def class_loss(scheme: IntervalScheme, cfg: LossConfig) -> IntervalCrossEntropy:
    return IntervalCrossEntropy()


def ordinal_loss(scheme: IntervalScheme, cfg: LossConfig) -> CumulativeBCELoss:
    return CumulativeBCELoss()
