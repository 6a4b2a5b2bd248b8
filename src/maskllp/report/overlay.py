"""The interpretability figure of the paper's Fig. 5: what the proportion was computed from.

Panels, left to right: the core image; the tumour mask M over it; the positive / negative maps F_p
(red) and F_n (blue) over the whole image; the masked maps F_p * M, F_n * M over the image (only
these enter s_p and s_n). Red and blue share one intensity scale so their balance is the estimate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maskllp.io.atomic import atomic_file
from maskllp.proportion.masked import mask_to_grid


def _resize_nearest(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w[, c]) -> (H, W[, c]) by nearest neighbour (no smoothing: map cells stay visible)."""
    h, w = a.shape[:2]
    rows = np.minimum((np.arange(shape[0]) * h / shape[0]).astype(np.int64), h - 1)
    cols = np.minimum((np.arange(shape[1]) * w / shape[1]).astype(np.int64), w - 1)
    return a[rows][:, cols]


def mask_on_grid(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(H, W) bool mask -> (h, w) float64 tumour fraction per map cell, exactly as stage 2 weighs
    the maps (:func:`maskllp.proportion.masked.mask_to_grid`)."""
    import torch

    m = torch.as_tensor(np.asarray(mask, dtype=np.float32))[None, None]
    return mask_to_grid(m, tuple(grid))[0, 0].double().numpy()


def positive_negative_rgb(
    f_p: np.ndarray, f_n: np.ndarray, weight: np.ndarray | None = None, scale: float | None = None
) -> np.ndarray:
    """Colour maps: F_p in red, F_n in blue, on black.

    f_p, f_n: (h, w) float >= 0. weight: optional (h, w) float in [0, 1] (the mask at map
    resolution) multiplied in. scale: the value shown at full intensity; default the 99th
    percentile of F_p + F_n where weight > 0 (or everywhere). Returns (h, w, 3) float in [0, 1].
    """
    f_p = np.asarray(f_p, dtype=np.float64)
    f_n = np.asarray(f_n, dtype=np.float64)
    if weight is not None:
        f_p = f_p * weight
        f_n = f_n * weight
    if scale is None:
        total = f_p + f_n
        sel = total[weight > 0] if weight is not None and np.any(weight > 0) else total.ravel()
        scale = float(np.percentile(sel, 99)) if sel.size else 0.0
    scale = scale if scale > 0 else 1.0
    rgb = np.zeros(f_p.shape + (3,))
    rgb[..., 0] = np.clip(f_p / scale, 0, 1)
    rgb[..., 2] = np.clip(f_n / scale, 0, 1)
    return rgb


def _blend(image: np.ndarray, colour: np.ndarray, alpha: float) -> np.ndarray:
    base = image.astype(np.float64) / 255.0
    return np.clip((1 - alpha) * base + alpha * colour, 0, 1)


def _mask_panel(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with the tumour mask (any resolution, same extent) in green over it."""
    mask_img = _resize_nearest(np.asarray(mask, dtype=np.float64), image.shape[:2])
    mask_rgb = np.zeros(image.shape[:2] + (3,))
    mask_rgb[..., 1] = mask_img
    return _blend(image, mask_rgb, 0.45 * (mask_img[..., None] > 0))


def _save_panels(panels: list[tuple[str, np.ndarray]], title: str, path: str | Path) -> Path:
    """A row of image panels with a title, written as PNG atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.5 * len(panels), 4))
    for ax, (name, img) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def proportion_figure(
    image: np.ndarray,
    mask: np.ndarray,
    f_p: np.ndarray,
    f_n: np.ndarray,
    title: str,
    path: str | Path,
) -> Path:
    """Write the four-panel figure (PNG) for one core; returns ``path``.

    image: (H, W, 3) uint8 as the network saw it. mask: (H', W') bool, any resolution over the same
    extent (shown resized to the image). f_p, f_n: (h, w) float >= 0 maps of the network.
    """
    shape = image.shape[:2]
    weight = mask_on_grid(mask, f_p.shape)
    full = positive_negative_rgb(f_p, f_n)
    masked = positive_negative_rgb(f_p, f_n, weight=weight)
    panels = [
        ("core", image.astype(np.float64) / 255.0),
        ("tumour mask M", _mask_panel(image, mask)),
        ("F_p (red) / F_n (blue)", _blend(image, _resize_nearest(full, shape), 0.7)),
        ("F_p*M / F_n*M", _blend(image, _resize_nearest(masked, shape), 0.7)),
    ]
    return _save_panels(panels, title, path)


def summary_figure(image: np.ndarray, mask: np.ndarray, title: str, path: str | Path) -> Path:
    """Two panels (core, tumour mask) for methods without F_p / F_n maps (Class, O-Reg)."""
    panels = [("core", image.astype(np.float64) / 255.0),
              ("tumour mask (not used by this method)", _mask_panel(image, mask))]
    return _save_panels(panels, title, path)
