"""Hematoxylin-DAB brightfield optics: stain vectors, per-core jitter, Beer-Lambert mixing.

A pixel's transmitted light in channel c is ``I0_c * 10 ** -(H * h_c + D * d_c + g_c)``, where
``H``/``D`` are hematoxylin and DAB concentrations (optical density units, log10), ``h``/``d`` the unit
stain vectors (``stain.hematoxylin_vector`` / ``stain.dab_vector``, jittered per patient and core)
and ``g`` the glass and mounting medium.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@dataclass(frozen=True)
class Optics:
    """Stain vectors and imaging of one core (all per-core draws)."""

    hematoxylin: np.ndarray
    """(3,) unit OD vector of hematoxylin (RGB)."""
    dab: np.ndarray
    """(3,) unit OD vector of DAB (RGB)."""
    glass_od: np.ndarray
    """(3,) OD of glass and mounting medium."""
    white: np.ndarray
    """(3,) white level (0-1) of the illumination, i.e. the white balance."""
    illumination: float
    """Amplitude of the uneven background (share of the white level)."""
    blur_px: float
    """Gaussian blur sigma (px) everywhere."""
    noise: float
    """Sensor noise SD in 8-bit levels."""
    defocus_px: float = 0.0
    """Extra blur sigma (px, added in quadrature) where the core is fully out of focus; 0: none."""
    defocus_scale: float = 1.0
    """Scale (px) of the defocus field (fractal value noise, see :mod:`maskllp.synth.render`)."""
    defocus_threshold: float = 1.0
    """Field value above which a pixel starts to lose focus (the field is below 1 everywhere)."""


def jitter_vector(rng: np.random.Generator, v: np.ndarray, sd: float) -> np.ndarray:
    """A unit stain vector moved by a normal error of SD ``sd`` per component (kept positive)."""
    w = np.clip(unit(v) + rng.normal(0.0, sd, 3), 0.02, None)
    return unit(w)


def od_to_rgb(od: np.ndarray, white: np.ndarray) -> np.ndarray:
    """Beer-Lambert: (..., 3) optical densities -> (..., 3) float32 intensities in [0, white]."""
    return (np.asarray(white, np.float32) * np.power(np.float32(10.0), -od)).astype(np.float32)


def mix_stains(h: np.ndarray, d: np.ndarray, optics: Optics) -> np.ndarray:
    """Concentration maps (H, W) float32 -> (H, W, 3) float32 optical density."""
    hv = optics.hematoxylin.astype(np.float32)
    dv = optics.dab.astype(np.float32)
    gv = optics.glass_od.astype(np.float32)
    return h[..., None] * hv + d[..., None] * dv + gv
