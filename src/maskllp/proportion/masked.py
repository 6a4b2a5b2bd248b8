"""Masked sums: the tumour mask brought to the map grid, s_p and s_n, and r_hat (or undefined).

The mask M is given at the input resolution (H, W) and brought to the (h, w) grid of the maps by
**area averaging**: each map cell gets the fraction of its pixels that are tumour, in [0, 1]. So

    s_p = sum_cells F_p * M_grid,   s_n = sum_cells F_n * M_grid,   r_hat = s_p / (s_p + s_n)

weigh every map cell by how much tumour it covers, and the sums stay proportional to the tumour area
(a thin rim of tumour along a cell border counts a little, not all or nothing as with nearest-neighbour
or max pooling). r_hat is **undefined** for a core whose mask is empty (no tumour cells) or whose sums
are numerically zero; such cores carry ``defined = False``, never 0 or NaN.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F  # noqa: N812

MIN_TOTAL = 1e-12
"""s_p + s_n at or below this counts as zero (r_hat undefined)."""


def mask_to_grid(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(N, 1, H, W) float mask in [0, 1] -> (N, 1, h, w) fraction of tumour pixels per grid cell.

    Exact area average when H and W are multiples of h and w (inputs are multiples of 32 in maskllp);
    otherwise adaptive average pooling (each cell averages the pixels that overlap it).
    """
    return F.adaptive_avg_pool2d(mask.float(), grid)


def masked_sums(maps: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked sums of the maps: ((N, 2) (s_p, s_n), (N,) mask area in grid cells).

    ``maps`` (N, 2, h, w) >= 0 (F_p, F_n); ``mask`` (N, 1, H, W) in [0, 1] at the input resolution.
    The sums are float32 whatever the maps' dtype: under bf16 autocast the maps are bf16, and bf16
    sums (8 significant bits) would round s_p, s_n and the proportion to ~0.4 % of their values.
    """
    grid = mask_to_grid(mask, (maps.shape[-2], maps.shape[-1]))
    return (maps.float() * grid).sum(dim=(2, 3)), grid.sum(dim=(1, 2, 3))


def proportion_from_sums(
    sums: torch.Tensor, mask_area: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 2) sums and (N,) mask areas -> (r_hat (N,), defined (N,) bool).

    ``r_hat = s_p / (s_p + s_n)`` where ``defined``; 0 (to be ignored) elsewhere. Gradients stay
    finite for every core.
    """
    total = sums.sum(dim=1)
    defined = (mask_area > 0) & (total > MIN_TOTAL)
    r_hat = sums[:, 0] / total.clamp_min(MIN_TOTAL)
    return torch.where(defined, r_hat, torch.zeros_like(r_hat)), defined
