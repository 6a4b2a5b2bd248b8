"""Colour statistics in optical-density space, to compare synthetic cores with real IHC images.

Both kinds of image go through the same colour deconvolution (:func:`maskllp.stains.unmix_hd`,
scikit-image's standard H-E-DAB matrix on log10 optical densities) and the same tissue mask, so the
numbers compare like with like even where the standard vectors do not fit a slide exactly.
"""

from __future__ import annotations

import numpy as np

from maskllp.stains import rgb_to_od, unmix_hd

TISSUE_OD = 0.1
"""Mean optical density (over R, G, B) above which a pixel counts as tissue, not glass."""
BROWN_OD = 0.2
"""DAB optical density above which a pixel counts as brown."""
PERCENTILES = (5, 50, 95, 99)


def tissue_mask(rgb: np.ndarray, threshold: float = TISSUE_OD) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) bool: pixels darker than glass (mean OD above ``threshold``)."""
    return rgb_to_od(rgb).mean(axis=-1) > threshold


def _summary(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), **{f"p{p}": float("nan") for p in PERCENTILES}}
    pct = np.percentile(values, PERCENTILES)
    return {"mean": float(values.mean()), "sd": float(values.std()),
            **{f"p{p}": float(v) for p, v in zip(PERCENTILES, pct, strict=True)}}


def stain_statistics(rgb: np.ndarray, mask: np.ndarray | None = None) -> dict[str, object]:
    """Hematoxylin and DAB optical density on tissue pixels of an (H, W, 3) uint8 image.

    Returns ``{"tissue_fraction", "brown_fraction", "hematoxylin": {...}, "dab": {...}}``, each stain
    with mean, sd and the 5th, 50th, 95th and 99th percentiles; ``brown_fraction`` is the share of
    tissue pixels with DAB OD above :data:`BROWN_OD`. ``mask`` defaults to :func:`tissue_mask`.
    """
    mask = tissue_mask(rgb) if mask is None else mask
    h, d = unmix_hd(rgb)
    hd, dd = h[mask], d[mask]
    return {
        "tissue_fraction": float(mask.mean()),
        "brown_fraction": float((dd > BROWN_OD).mean()) if dd.size else float("nan"),
        "hematoxylin": _summary(hd),
        "dab": _summary(dd),
    }
