"""The interpretability figure of the paper's Fig. 5: what the proportion was computed from.

First row, the whole core as the network saw it: the tumour mask M outlined; the positive share
F_p / (F_p + F_n) inside M with a colour bar; the masked densities F_p * M (red) and F_n * M (blue),
whose sums are s_p and s_n. Maps are drawn at their own resolution and interpolated bilinearly over
the image. Second row (``predict`` gives it): a full-resolution window of the core where cells are
visible, each marked by its call, and the positive share over that window.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskllp.classes import QUPATH_COLOURS
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
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.5 * len(panels), 4))
    for ax, (name, img) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def _pyplot():  # noqa: ANN202 - matplotlib's module
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path, dpi: int = 100) -> Path:  # noqa: ANN001 - a matplotlib Figure
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    _pyplot().close(fig)
    return path


@dataclass(frozen=True)
class CloseUp:
    """A full-resolution window of the core for the figure's second row, with its cells.

    rgb: (h, w, 3) uint8 level-0 pixels; yx: (n, 2) float cell positions in the window's pixels;
    classes: (n,) CellClass of each (as ``predict`` calls them); box: (top, left, bottom, right) of
    the window in the pixels of the whole-core panel it is outlined on (the network image, or the
    preview); mpp: level-0 pixel size in microns (for the scale bar), None when unknown; positive:
    (n,) p(positive) of each cell (NaN for cells without one), None when the method gives none.
    """

    rgb: np.ndarray
    yx: np.ndarray
    classes: np.ndarray
    box: tuple[float, float, float, float]
    mpp: float | None = None
    positive: np.ndarray | None = None


def densest_window(yx: np.ndarray, shape: tuple[int, int], side: int) -> tuple[int, int]:
    """(top, left) of the ``side`` x ``side`` window inside an image of ``shape`` that holds the most
    points of ``yx`` ((n, 2) float, level-0), searched on a grid of quarter-window steps; (0, 0) for
    no points. The window is clipped to the image when the image is smaller."""
    h, w = int(shape[0]), int(shape[1])
    side_h, side_w = min(side, h), min(side, w)
    if len(yx) == 0:
        return 0, 0
    step = max(1, side // 4)
    best, best_count = (0, 0), -1
    for top in range(0, max(1, h - side_h + 1), step):
        for left in range(0, max(1, w - side_w + 1), step):
            inside = ((yx[:, 0] >= top) & (yx[:, 0] < top + side_h)
                      & (yx[:, 1] >= left) & (yx[:, 1] < left + side_w))
            if int(inside.sum()) > best_count:
                best, best_count = (top, left), int(inside.sum())
    return best


def _mask_alpha(weight: np.ndarray, opacity: float) -> np.ndarray:
    """(h, w) opacity of a map cell in the figure: full (``opacity``) from 30 % tumour area on, fading
    to 0 outside M (the masks' disks cover only part of most map cells)."""
    return opacity * np.clip(np.asarray(weight, np.float64) / 0.3, 0, 1)


def positive_share(f_p: np.ndarray, f_n: np.ndarray) -> np.ndarray:
    """(h, w) F_p / (F_p + F_n), the share of positive density per map cell (0.5 where both are 0)."""
    f_p, f_n = np.asarray(f_p, np.float64), np.asarray(f_n, np.float64)
    total = f_p + f_n
    return np.divide(f_p, total, out=np.full(total.shape, 0.5), where=total > 0)


CLASS_COLOURS = {c: tuple(v / 255 for v in rgb) for c, rgb in QUPATH_COLOURS.items()}
"""Marker colours of the called cells, QuPath's class colours."""


def proportion_figure(
    image: np.ndarray,
    mask: np.ndarray,
    f_p: np.ndarray,
    f_n: np.ndarray,
    title: str,
    path: str | Path,
    close_up: CloseUp | None = None,
) -> Path:
    """Write the paper's Fig. 5 for one core (PNG); returns ``path``.

    First row, the whole core as the network saw it: the image with the tumour mask M outlined;
    the positive share F_p / (F_p + F_n) inside M (blue 0 ... red 1, with a colour bar); the masked
    densities F_p * M (red) and F_n * M (blue) whose sums are s_p and s_n. Maps are drawn at their
    own resolution, interpolated bilinearly over the image (a map cell is 8 input pixels). With
    ``close_up``, a second row: a full-resolution window of the core (outlined in the first panel)
    with each cell marked by its call, and the positive share over the same window.

    image: (H, W, 3) uint8 as the network saw it. mask: (H', W') bool, any resolution over the same
    extent. f_p, f_n: (h, w) float >= 0 maps of the network.
    """
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.patches import Patch, Rectangle

    plt = _pyplot()
    h, w = image.shape[:2]
    weight = mask_on_grid(mask, f_p.shape)
    share = positive_share(f_p, f_n)
    density = positive_negative_rgb(f_p, f_n, weight=weight)
    mask_img = _resize_nearest(np.asarray(mask, np.float64), (h, w))
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)
    share_cmap = LinearSegmentedColormap.from_list("share", SHARE_COLOURS)
    rows = 2 if close_up is not None else 1
    fig, axes = plt.subplots(rows, 3, figsize=(13.5, 4.6 * rows), squeeze=False)
    ax = axes[0]
    ax[0].imshow(image, interpolation="antialiased")
    if mask_img.any():
        ax[0].contour(mask_img, levels=[0.5], colors=[(0.1, 0.75, 0.2)], linewidths=1.0)
    ax[0].set_title("core, tumour mask M (green outline)", fontsize=10)
    ax[1].imshow(image, interpolation="antialiased")
    shown = ax[1].imshow(share, cmap=share_cmap, vmin=0, vmax=1, extent=extent, interpolation="bilinear",
                         alpha=_mask_alpha(weight, 0.85))
    bar = fig.colorbar(shown, ax=ax[1], fraction=0.046, pad=0.02)
    bar.set_label("F_p / (F_p + F_n) inside M", fontsize=9)
    ax[1].set_title("positive share of the maps, inside M", fontsize=10)
    ax[2].imshow(_blend(image, np.zeros(image.shape), 0.55), interpolation="antialiased")
    ax[2].imshow(np.concatenate([density, np.clip(density.max(2, keepdims=True) * 1.6, 0, 1)], 2),
                 extent=extent, interpolation="bilinear")
    ax[2].legend(handles=[Patch(color=(0.9, 0.1, 0.1), label="F_p * M (sum: s_p)"),
                          Patch(color=(0.1, 0.1, 0.9), label="F_n * M (sum: s_n)")],
                 loc="lower right", fontsize=8, framealpha=0.85)
    ax[2].set_title("masked densities (brightness: density / its 99th percentile)", fontsize=10)
    if close_up is not None:
        top, left, bottom, right = close_up.box
        ax[0].add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                                  edgecolor="black", linewidth=1.2, linestyle="--"))
        _close_up_row(fig, axes[1], close_up, share, weight, (h, w), share_cmap)
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path, dpi=110)


def _close_up_row(fig, ax, close_up: CloseUp, share: np.ndarray, weight: np.ndarray,  # noqa: ANN001
                  image_shape: tuple[int, int], cmap) -> None:  # noqa: ANN001
    """The second row: the full-resolution window with its cells by call, and the positive share
    over the same window (the maps interpolated to the window's pixels)."""
    ch, cw = close_up.rgb.shape[:2]
    _draw_calls(ax[0], close_up)
    ax[1].imshow(close_up.rgb, interpolation="antialiased")
    top, left, bottom, right = close_up.box
    gh, gw = share.shape
    # the map cells' extent in the window's pixels: map cell j covers input pixels [j, j + 1) * stride
    sy, sx = image_shape[0] / gh, image_shape[1] / gw
    ky, kx = ch / (bottom - top), cw / (right - left)
    extent = ((-left) * kx - 0.5, (gw * sx - left) * kx - 0.5, (gh * sy - top) * ky - 0.5, (-top) * ky - 0.5)
    ax[1].imshow(share, cmap=cmap, vmin=0, vmax=1, extent=extent, interpolation="bilinear",
                 alpha=_mask_alpha(weight, 0.7))
    ax[1].set_xlim(-0.5, cw - 0.5)
    ax[1].set_ylim(ch - 0.5, -0.5)
    ax[1].set_title("the same window: positive share of the maps inside M", fontsize=10)
    ax[2].axis("off")
    ax[2].text(0.02, 0.95, _reading_guide(), va="top", fontsize=9, wrap=True, transform=ax[2].transAxes)


def _draw_calls(ax, close_up: CloseUp) -> None:  # noqa: ANN001 - a matplotlib Axes
    """The close-up at full resolution, each cell circled in the colour of its call, with a legend."""
    from matplotlib.lines import Line2D

    from maskllp.classes import CellClass

    ax.imshow(close_up.rgb, interpolation="antialiased")
    handles = []
    for cls, name in ((CellClass.POSITIVE_TUMOUR, "positive tumour"),
                      (CellClass.NEGATIVE_TUMOUR, "negative tumour"),
                      (CellClass.TUMOUR, "tumour"), (CellClass.NON_TUMOUR, "non-tumour")):
        sel = close_up.classes == cls
        if sel.any():
            ax.scatter(close_up.yx[sel, 1], close_up.yx[sel, 0], s=60, facecolors="none",
                       edgecolors=[CLASS_COLOURS[cls]], linewidths=1.4)
            handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none",
                                  markeredgecolor=CLASS_COLOURS[cls], label=f"{name} ({int(sel.sum())})"))
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.85)
    scale = "" if close_up.mpp is None else f", {close_up.rgb.shape[1] * close_up.mpp:.0f} um wide"
    ax.set_title(f"close-up at full resolution{scale}: each cell's call", fontsize=10)


SHARE_COLOURS = [(0.15, 0.3, 0.85), (0.93, 0.93, 0.93), (0.85, 0.15, 0.15)]
"""Blue (0, negative) - grey (0.5) - red (1, positive): the positive share and p(positive)."""


def cell_calls_figure(preview: np.ndarray, close_up: CloseUp, title: str, path: str | Path) -> Path:
    """The figure of a cell-level method (``ours-cells``, Det) for one core (PNG); returns ``path``.

    Three panels: the whole core (``preview``, (h, w, 3) uint8: the tumour mask tinted, each cell a
    dot in the colour of its call) with the close-up outlined (``close_up.box`` in the preview's
    pixels); the close-up at full resolution with each cell circled by its call; the same window
    with each tumour cell's p(positive) (blue 0 ... red 1, colour bar), so the uncertain calls (near
    0.5, what the TPS range is made of) stand out. The TPS is the count of the calls.
    """
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.patches import Rectangle

    plt = _pyplot()
    fig, ax = plt.subplots(1, 3, figsize=(13.5, 4.8), squeeze=True)
    ax[0].imshow(preview, interpolation="antialiased")
    top, left, bottom, right = close_up.box
    ax[0].add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                              edgecolor="black", linewidth=1.2, linestyle="--"))
    ax[0].set_title("core: tumour mask (amber), cells by call (dots)", fontsize=10)
    _draw_calls(ax[1], close_up)
    ax[2].imshow(_blend(close_up.rgb, np.zeros(close_up.rgb.shape), 0.35), interpolation="antialiased")
    p = (np.full(len(close_up.yx), np.nan) if close_up.positive is None
         else np.asarray(close_up.positive, np.float64))
    called = np.isfinite(p)
    cmap = LinearSegmentedColormap.from_list("share", SHARE_COLOURS)
    shown = ax[2].scatter(close_up.yx[called, 1], close_up.yx[called, 0], c=p[called], cmap=cmap, vmin=0,
                          vmax=1, s=70, edgecolors="black", linewidths=0.6)
    bar = fig.colorbar(shown, ax=ax[2], fraction=0.046, pad=0.02)
    bar.set_label("p(positive) of each tumour cell", fontsize=9)
    uncertain = int(np.sum(np.abs(p[called] - 0.5) < 0.2))
    ax[2].set_title(f"the same window: p(positive); {uncertain} of {int(called.sum())} cells in 0.3-0.7",
                    fontsize=10)
    ch, cw = close_up.rgb.shape[:2]
    ax[2].set_xlim(-0.5, cw - 0.5)
    ax[2].set_ylim(ch - 0.5, -0.5)
    for a in ax:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path, dpi=110)


def _reading_guide() -> str:
    return ("How to read this figure\n\n"
            "s_p = sum of F_p * M and s_n = sum of F_n * M over the core;\n"
            "the TPS is s_p / (s_p + s_n).\n\n"
            "Red inside the mask: the network counts positive tumour\n"
            "cells there; blue: negative ones. Outside M nothing counts.\n\n"
            "The close-up marks each cell stage 1 found with its call\n"
            "(for the map method: the map's share under the cell).\n"
            "Red cells on blue map, or the reverse, are where to look.")


def summary_figure(image: np.ndarray, mask: np.ndarray, title: str, path: str | Path) -> Path:
    """Two panels (core, tumour mask) for methods without F_p / F_n maps (Class, O-Reg)."""
    panels = [("core", image.astype(np.float64) / 255.0),
              ("tumour mask (not used by this method)", _mask_panel(image, mask))]
    return _save_panels(panels, title, path)
