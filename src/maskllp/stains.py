"""Colour deconvolution of IHC images: hematoxylin, eosin (a residual for IHC) and DAB optical density.

The standard stain matrix of Ruifrok & Johnston (2001), as scikit-image's ``hed_from_rgb``, applied
to base-10 optical densities (QuPath's convention): OD = -log10(I / 255), I floored at 1. Every
stain measurement of maskllp (cell measurements, stain inputs, the synthetic cohort's realism
figures) goes through these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

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


# --- The stain vectors of one core (Macenko et al. 2009) and the range of a training cohort ---------

TISSUE_OD = 0.15
"""Pixels whose optical density, averaged over the three channels, is above this are tissue (Macenko's
beta, on the mean rather than every channel, so that a pale counterstain still counts)."""
DAB_PRESENT_OD = 0.15
"""A tissue pixel is DAB-stained when its DAB density (fixed deconvolution) exceeds this."""
MIN_DAB_FRACTION = 0.01
"""The DAB vector is estimated only when at least this share of tissue pixels is DAB-stained."""
MIN_TISSUE_PIXELS = 500
"""Fewer tissue pixels than this: no stain vectors (a blank or nearly blank image)."""
_ANGLE_PERCENTILE = 1.0  # Macenko's alpha: the robust extremes of the angle distribution


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.abs(v) if np.all(v <= 0) else v  # eigenvectors come with either sign
    return v / max(float(np.linalg.norm(v)), 1e-12)


def angle_deg(a: np.ndarray | tuple[float, ...], b: np.ndarray | tuple[float, ...]) -> float:
    """Angle in degrees between two optical-density vectors (of any length)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = float(a @ b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12)
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


@dataclass(frozen=True)
class StainVectors:
    """What one image's stains look like: unit optical-density vectors (R, G, B) and the
    counterstain's strength."""

    hematoxylin: tuple[float, float, float]
    dab: tuple[float, float, float] | None
    """None when too few pixels carry DAB to estimate its colour (a core without staining)."""
    hematoxylin_od: float
    """The 99th percentile of the hematoxylin amount along its vector (OD units): how dark the
    counterstain is."""


def estimate_stain_vectors(rgb: np.ndarray) -> StainVectors | None:
    """(..., 3) uint8 RGB pixels (an image or a sample of its pixels) -> their stain vectors, or None
    when fewer than :data:`MIN_TISSUE_PIXELS` are tissue.

    Tissue pixels are those whose mean optical density exceeds :data:`TISSUE_OD`. DAB: Macenko et al. (2009),
    the tissue's optical densities projected on the plane of their two main directions, the
    directions at the 1st and 99th percentile of the angle in that plane, the one nearer Ruifrok's
    DAB vector being DAB; None when under :data:`MIN_DAB_FRACTION` of the tissue holds DAB.
    Hematoxylin: the main direction of the tissue pixels without DAB (steadier than Macenko's
    extreme, which DAB over nuclei pulls); in a core where nearly every pixel holds DAB, Macenko's
    other extreme.
    """
    od = rgb_to_od(np.asarray(rgb).reshape(-1, 3))
    od = od[od.mean(axis=1) > TISSUE_OD]
    if len(od) < MIN_TISSUE_PIXELS:
        return None
    stained = (od @ HED_FROM_RGB)[:, 2] > DAB_PRESENT_OD
    h = _main_direction(od[~stained]) if (~stained).sum() >= MIN_TISSUE_PIXELS // 2 else None
    d = None
    if stained.mean() >= MIN_DAB_FRACTION:
        v1, v2 = _macenko_extremes(od)
        ref_d = _unit(RGB_FROM_HED[2])
        d, other = (v1, v2) if angle_deg(v1, ref_d) <= angle_deg(v2, ref_d) else (v2, v1)
        h = other if h is None else h
    assert h is not None  # no DAB means most tissue pixels are without it
    amount = _amount_along(od, h, d)
    return StainVectors(tuple(float(x) for x in h), None if d is None else tuple(float(x) for x in d),
                        float(np.percentile(amount, 99)))


def _main_direction(od: np.ndarray) -> np.ndarray:
    """The unit direction along which (N, 3) optical densities spread most, through the origin."""
    _, _, vt = np.linalg.svd(od, full_matrices=False)
    return _unit(vt[0])


def _macenko_extremes(od: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, vectors = np.linalg.eigh(np.cov(od, rowvar=False))
    plane = vectors[:, [2, 1]]  # the two largest eigenvalues' directions
    plane[:, 0] = _unit(plane[:, 0])
    projected = od @ plane
    phi = np.arctan2(projected[:, 1], projected[:, 0])
    lo, hi = np.percentile(phi, [_ANGLE_PERCENTILE, 100 - _ANGLE_PERCENTILE])
    return (_unit(plane @ np.array([np.cos(lo), np.sin(lo)])),
            _unit(plane @ np.array([np.cos(hi), np.sin(hi)])))


def _amount_along(od: np.ndarray, h: np.ndarray, d: np.ndarray | None) -> np.ndarray:
    """Hematoxylin amount of each pixel: least squares on the stain vectors (H alone when no DAB)."""
    basis = np.stack([h] if d is None else [h, d], axis=1)  # (3, k)
    amounts, *_ = np.linalg.lstsq(basis, od.T, rcond=None)
    return amounts[0]


@dataclass(frozen=True)
class StainRange:
    """The stains of a model's training cores: the mean colour of each stain, how far the training
    cores' own colours lie from it, and the span of the counterstain's strength. A core outside
    it is stained unlike anything the model learnt from (another lab, scanner or protocol)."""

    hematoxylin: tuple[float, float, float]
    hematoxylin_max_deg: float
    """The largest angle of a training core's hematoxylin vector from ``hematoxylin``."""
    dab: tuple[float, float, float] | None
    """None when no training core had enough DAB to estimate its colour."""
    dab_max_deg: float | None
    hematoxylin_od: tuple[float, float]
    """(lowest, highest) :attr:`StainVectors.hematoxylin_od` of the training cores."""
    cores: int

    @classmethod
    def of(cls, stains: list[StainVectors]) -> StainRange:
        """The range of ``stains`` (one per training core; at least one)."""
        if not stains:
            raise ValueError("a stain range needs at least one core")
        h = _unit(np.mean([s.hematoxylin for s in stains], axis=0))
        dabs = [s.dab for s in stains if s.dab is not None]
        d = _unit(np.mean(dabs, axis=0)) if dabs else None
        ods = [s.hematoxylin_od for s in stains]
        return cls(tuple(float(x) for x in h), max(angle_deg(s.hematoxylin, h) for s in stains),
                   None if d is None else tuple(float(x) for x in d),
                   None if d is None else max(angle_deg(x, d) for x in dabs),
                   (float(min(ods)), float(max(ods))), len(stains))

    def departures(self, stains: StainVectors, margin_deg: float, od_margin: float) -> list[str]:
        """How ``stains`` lie outside this range, each a short phrase (empty: inside). A colour is
        outside when its angle from the training mean exceeds the training cores' largest by more
        than ``margin_deg``; the strength when it lies beyond the training span widened by the
        factor 1 + ``od_margin`` on each side."""
        out = []
        h_deg = angle_deg(stains.hematoxylin, self.hematoxylin)
        if h_deg > self.hematoxylin_max_deg + margin_deg:
            out.append(f"hematoxylin colour {h_deg:.1f} deg from the training mean (training cores "
                       f"within {self.hematoxylin_max_deg:.1f})")
        if stains.dab is not None and self.dab is not None and self.dab_max_deg is not None:
            d_deg = angle_deg(stains.dab, self.dab)
            if d_deg > self.dab_max_deg + margin_deg:
                out.append(f"DAB colour {d_deg:.1f} deg from the training mean (training cores within "
                           f"{self.dab_max_deg:.1f})")
        lo, hi = self.hematoxylin_od
        if not lo / (1 + od_margin) <= stains.hematoxylin_od <= hi * (1 + od_margin):
            out.append(f"hematoxylin strength {stains.hematoxylin_od:.2f} OD (training cores "
                       f"{lo:.2f}-{hi:.2f})")
        return out

    def to_json(self) -> dict:
        return {"hematoxylin": list(self.hematoxylin), "hematoxylin_max_deg": self.hematoxylin_max_deg,
                "dab": None if self.dab is None else list(self.dab), "dab_max_deg": self.dab_max_deg,
                "hematoxylin_od": list(self.hematoxylin_od), "cores": self.cores}

    @classmethod
    def from_json(cls, data: object) -> StainRange:
        """Raises ValueError (naming the field) on anything but a well-formed range."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")

        def vector(key: str, optional: bool = False) -> tuple[float, float, float] | None:
            v = data.get(key)
            if v is None and optional:
                return None
            if (not isinstance(v, list) or len(v) != 3 or not all(_finite(x) and x >= 0 for x in v)
                    or not 0.99 < float(np.linalg.norm(v)) < 1.01):
                raise ValueError(f"'{key}' is not a unit vector of 3 non-negative numbers")
            return (float(v[0]), float(v[1]), float(v[2]))

        def angle(key: str, optional: bool = False) -> float | None:
            v = data.get(key)
            if v is None and optional:
                return None
            if not _finite(v) or not 0 <= v <= 180:
                raise ValueError(f"'{key}' is not an angle in degrees")
            return float(v)

        h, d = vector("hematoxylin"), vector("dab", optional=True)
        h_deg, d_deg = angle("hematoxylin_max_deg"), angle("dab_max_deg", optional=True)
        if (d is None) != (d_deg is None):
            raise ValueError("'dab' and 'dab_max_deg' must be given together")
        od, cores = data.get("hematoxylin_od"), data.get("cores")
        if not (isinstance(od, list) and len(od) == 2 and all(_finite(x) and x > 0 for x in od)
                and od[0] <= od[1]):
            raise ValueError("'hematoxylin_od' is not (lowest, highest) positive numbers")
        if not isinstance(cores, int) or isinstance(cores, bool) or cores < 1:
            raise ValueError("'cores' is not a positive whole number")
        return cls(h, float(h_deg), d, d_deg, (float(od[0]), float(od[1])), cores)  # type: ignore[arg-type]


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and bool(np.isfinite(x))
