"""Colour deconvolution of IHC images: hematoxylin, eosin (a residual for IHC) and DAB optical density.

The standard stain matrix of Ruifrok & Johnston (2001), as scikit-image's ``hed_from_rgb``, applied
to base-10 optical densities (QuPath's convention): OD = -log10(I / 255), I floored at 1. Every
stain measurement of maskllp (cell measurements, stain inputs, the synthetic cohort's realism
figures) goes through these functions.
"""

from __future__ import annotations

import numpy as np
from skimage.color import hed_from_rgb, rgb_from_hed

HED_FROM_RGB = np.asarray(hed_from_rgb, np.float64)
"""(3, 3): optical densities (rows: R, G, B) -> stain densities (H, E, DAB), ``od @ HED_FROM_RGB``."""
RGB_FROM_HED = np.asarray(rgb_from_hed, np.float64)
"""(3, 3): the inverse, stain densities -> optical densities."""


def rgb_to_od(rgb: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """(..., 3) uint8 RGB -> (..., 3) optical density -log10(I / 255), I floored at 1."""
    return -np.log10(np.maximum(np.asarray(rgb).astype(dtype), 1.0) / 255.0)


def stain_densities(rgb: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """(..., 3) uint8 RGB -> (..., 3) stain densities (hematoxylin, eosin, DAB), log10 OD units."""
    return rgb_to_od(rgb, dtype) @ HED_FROM_RGB.astype(dtype)


def unmix_hd(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 -> (hematoxylin OD, DAB OD), each (H, W) float64."""
    hed = stain_densities(rgb)
    return hed[..., 0], hed[..., 2]
