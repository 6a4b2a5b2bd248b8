"""Training augmentation: the 8 flips/90-degree rotations, and stain jitter in H-E-DAB space.

Images are (H, W, 3) uint8 RGB; points are (N, 2) float64 index coordinates that move with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskllp.stains import HED_FROM_RGB, RGB_FROM_HED


@dataclass(frozen=True)
class Dihedral:
    """One of the 8 symmetries of the square: transpose first (when ``transpose``), then rotate
    by ``quarter_turns`` * 90 degrees counter-clockwise (as ``np.rot90``)."""

    quarter_turns: int
    transpose: bool

    @staticmethod
    def random(rng: np.random.Generator) -> Dihedral:
        return Dihedral(int(rng.integers(4)), bool(rng.integers(2)))

    def apply(self, array: np.ndarray) -> np.ndarray:
        """(H, W, ...) -> the transformed array (its first two axes moved; other axes untouched)."""
        out = np.swapaxes(array, 0, 1) if self.transpose else array
        return np.ascontiguousarray(np.rot90(out, self.quarter_turns, axes=(0, 1)))

    def apply_points(self, yx: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """(N, 2) index coordinates in an (H, W) array -> coordinates in ``apply(array)``."""
        y, x = np.asarray(yx, np.float64).reshape(-1, 2).T
        h, w = shape
        if self.transpose:
            y, x, h, w = x, y, w, h
        for _ in range(self.quarter_turns % 4):  # np.rot90 once: (y, x) -> (w - 1 - x, y)
            y, x, h, w = w - 1 - x, y, w, h
        return np.stack([y, x], axis=1)


def stain_jitter(rgb: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Random stain variation (Tellez et al. 2018): in optical-density H-E-DAB space each stain is
    scaled by ``1 + U(-s, s)`` and shifted by ``U(-s, s)``.

    rgb: (H, W, 3) uint8. Returns (H, W, 3) uint8. ``strength`` 0 returns the input unchanged.
    """
    if strength <= 0:
        return rgb
    hed_from_rgb, rgb_from_hed = HED_FROM_RGB, RGB_FROM_HED
    od = -np.log(np.maximum(rgb.astype(np.float64), 1.0) / 255.0)
    stains = od.reshape(-1, 3) @ hed_from_rgb
    scale = 1.0 + rng.uniform(-strength, strength, 3)
    shift = rng.uniform(-strength, strength, 3)
    stains = stains * scale + shift
    od_new = np.maximum(stains @ rgb_from_hed, 0.0)
    out = 255.0 * np.exp(-od_new)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(rgb.shape)
