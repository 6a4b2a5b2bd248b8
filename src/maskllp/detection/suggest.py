"""Which detected cells a pathologist should label next, to teach the tumour classifier the most.

Stage 1 learns tumour / non-tumour from a few annotated cores; the cell types those cores hold few
of (macrophages, say) are the ones it gets wrong, and a wrong call puts a cell into the tumour mask
that every stage-2 method then counts. Labelling more cells at random mostly adds the common,
already learnt ones. These functions rank unlabelled cells instead by how unsure the classifier is
(margin sampling) and spread the choice over the kinds of cell among them (cluster-margin
sampling, Citovsky et al. 2021, "Batch active learning at scale"): the ``pool_factor * n`` least
certain cells are clustered on their standardised features into ``n`` groups and the least certain
cell of each group is suggested, so one batch does not spend its clicks on one kind of mistake.

Pure functions on arrays; the cohort-level command is ``maskllp suggest``
(:mod:`maskllp.workflows.suggest`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Strategy = Literal["diverse", "uncertain", "random"]
STRATEGIES: tuple[str, ...] = ("diverse", "uncertain", "random")
"""``diverse`` (cluster-margin, the default), ``uncertain`` (margin only) and ``random`` (a uniform
sample of the unlabelled cells: what an unbiased estimate of stage 1's accuracy needs)."""


def tumour_margin(tumour_score: np.ndarray) -> np.ndarray:
    """|p - 0.5| of (N,) tumour probabilities: 0 for the least certain call, 0.5 for the surest."""
    return np.abs(np.asarray(tumour_score, dtype=np.float64) - 0.5)


def cells_to_label(tumour_score: Sequence[np.ndarray], features: Sequence[np.ndarray],
                   labelled: Sequence[np.ndarray], n: int, strategy: Strategy = "diverse",
                   pool_factor: int = 10, seed: int = 0) -> list[tuple[int, int]]:
    """Up to ``n`` (core index, cell index) pairs to label, least certain first.

    tumour_score: per core an (N_i,) float array in [0, 1] (NaN: no call, never suggested).
    features: per core an (N_i, F) float array of the same cells (any per-cell description; only
    ``diverse`` reads it; each column is standardised over the pool).
    labelled: per core an (N_i,) bool array, True where an annotation already labels the cell.
    ``pool_factor``: ``diverse`` clusters the ``pool_factor * n`` least certain cells.
    Fewer than ``n`` pairs come back when fewer cells are unlabelled.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if n < 0 or pool_factor < 1:
        raise ValueError(f"need n >= 0 and pool_factor >= 1, got {n} and {pool_factor}")
    if not len(tumour_score) == len(features) == len(labelled):
        raise ValueError("tumour_score, features and labelled must list the same cores")
    core = np.concatenate([np.full(len(s), i) for i, s in enumerate(tumour_score)] or [np.zeros(0)])
    index = np.concatenate([np.arange(len(s)) for s in tumour_score] or [np.zeros(0)])
    score = np.concatenate([np.asarray(s, np.float64).reshape(-1) for s in tumour_score] or [np.zeros(0)])
    taken = np.concatenate([np.asarray(m, bool).reshape(-1) for m in labelled] or [np.zeros(0, bool)])
    if len(taken) != len(score):
        raise ValueError("each core's labelled flags must match its cells")
    candidates = np.flatnonzero(~taken & np.isfinite(score))
    if n == 0 or not len(candidates):
        return []
    rng = np.random.default_rng(seed)
    if strategy == "random":
        chosen = rng.choice(candidates, size=min(n, len(candidates)), replace=False)
        return [(int(core[k]), int(index[k])) for k in chosen]
    margin = tumour_margin(score)
    by_margin = candidates[np.lexsort((rng.random(len(candidates)), margin[candidates]))]
    if strategy == "uncertain" or len(by_margin) <= n:
        chosen = by_margin[:n]
    else:  # diverse
        pool = by_margin[:pool_factor * n]
        x = np.concatenate([np.asarray(f, np.float64).reshape(len(s), -1)
                            for f, s in zip(features, tumour_score, strict=True)])[pool]
        groups = _kmeans_groups(x, n, seed)
        chosen_list = []
        for g in np.unique(groups):
            members = pool[groups == g]
            chosen_list.append(members[np.argmin(margin[members])])  # pool is sorted: first is least sure
        chosen = np.array(chosen_list)
        chosen = chosen[np.argsort(margin[chosen], kind="stable")]
    return [(int(core[k]), int(index[k])) for k in chosen]


def _kmeans_groups(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(M,) group of each row of ``x`` (M, F): k-means on the standardised columns (non-finite
    values set to the column mean)."""
    from sklearn.cluster import KMeans

    x = np.where(np.isfinite(x), x, np.nan)
    mean = np.nanmean(x, axis=0) if x.size else np.zeros(x.shape[1])
    x = np.where(np.isnan(x), np.where(np.isnan(mean), 0.0, mean), x)
    spread = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    k = min(k, len(np.unique(z, axis=0)))
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(z)
