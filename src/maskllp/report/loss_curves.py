"""The paper's Fig. 3: focal and weighted focal proportion loss per interval vs the predicted proportion.

The curves are computed with the very loss modules used in training
(:func:`maskllp.proportion.losses.focal_proportion_loss` and
:func:`~maskllp.proportion.losses.weighted_focal_proportion_loss`), so the figure shows what the
code optimises. Left: focal proportion loss (gamma 2 for every interval); right: weighted focal
proportion loss (gamma per interval, default 0 for '0-1 %' and 2 otherwise). One curve per interval,
x = predicted proportion on [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from maskllp.config.proportion import LossConfig
from maskllp.intervals import IntervalScheme
from maskllp.io.atomic import atomic_file
from maskllp.proportion.losses import focal_proportion_loss, weighted_focal_proportion_loss


def loss_curves(loss: nn.Module, n_intervals: int, n_points: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """x (n_points,) float64 on [0, 1] and y (n_intervals, n_points) float64: the per-core loss of a
    core labelled with each interval at predicted proportion x."""
    x = torch.linspace(0.0, 1.0, n_points, dtype=torch.float64)
    ys = []
    with torch.no_grad():
        for k in range(n_intervals):
            interval = torch.full((n_points,), k, dtype=torch.int64)
            ys.append(loss.per_core(x.float(), interval).double())
    return x.numpy(), torch.stack(ys).numpy()


def plot_loss_curves(path: str | Path, scheme: IntervalScheme, cfg: LossConfig, ymax: float = 1.0,
                     dpi: int = 150) -> Path:
    """Draw Fig. 3 for ``scheme`` and ``cfg`` (gammas) and write it to ``path`` (format by suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (f"focal proportion loss (gamma {cfg.focal_gamma:g})", focal_proportion_loss(scheme, cfg)),
        ("weighted focal proportion loss (gamma " + ", ".join(
            f"{g:g}" for g in weighted_focal_proportion_loss(scheme, cfg).gammas.tolist()) + ")",
         weighted_focal_proportion_loss(scheme, cfg)),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (title, loss) in zip(axes, panels, strict=True):
        x, y = loss_curves(loss, len(scheme))
        for k, name in enumerate(scheme.names):
            ax.plot(x, y[k], label=name, lw=1.6)
        for b in scheme.boundaries[1:-1]:
            ax.axvline(b, color="0.85", lw=0.8, zorder=0)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, ymax)
        ax.set_xlabel("predicted proportion")
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("loss")
    axes[1].legend(title="labelled interval", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    plt.close(fig)
    return path
