"""Random fields that are pure functions of absolute pixel position.

Every random texture of a synthetic core (chromatin, stroma fibres, background, sensor noise) is a
function of ``(seed, y, x)`` built on an integer hash, never of the order in which pixels are
visited. So a core rendered in one piece and the same core rendered tile by tile give the same
pixels, and a 10 000 px core needs no full-size random array.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint32(0x7FEB352D)
_M2 = np.uint32(0x846CA68B)
_KY = np.uint32(0x9E3779B1)
_KX = np.uint32(0x85EBCA77)
_KS = np.uint32(0xC2B2AE3D)


def _as_u32(a: np.ndarray | int) -> np.ndarray:
    """Integers (any sign, int64 range) -> uint32 with wrap-around."""
    return np.asarray(a, dtype=np.int64).astype(np.uint32)


def hash_u32(seed: int, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """A well-mixed uint32 per integer lattice point (broadcasting ``iy`` against ``ix``).

    ``seed`` is any non-negative int (reduced mod 2**32); ``iy``, ``ix``: integer arrays.
    """
    with np.errstate(over="ignore"):
        h = _as_u32(iy) * _KY + _as_u32(ix) * _KX + np.uint32(seed % (1 << 32)) * _KS
        h ^= h >> np.uint32(16)
        h *= _M1
        h ^= h >> np.uint32(15)
        h *= _M2
        h ^= h >> np.uint32(16)
    return h


def hash_uniform(seed: int, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """Uniform float32 in [0, 1) per lattice point (see :func:`hash_u32`)."""
    return (hash_u32(seed, iy, ix) >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def sub_seed(seed: int, tag: int) -> int:
    """A derived seed for one named field of a core (``tag`` a small int)."""
    return int(hash_u32(seed, np.array(tag), np.array(0x5EED)))


def _smooth(t: np.ndarray) -> np.ndarray:
    return t * t * (np.float32(3.0) - np.float32(2.0) * t)


def value_noise_grid(seed: int, top: int, left: int, height: int, width: int,
                     scale: float) -> np.ndarray:
    """Smooth value noise in [0, 1) on the pixel grid of a window, (height, width) float32.

    The lattice has spacing ``scale`` pixels and is anchored at absolute pixel (0, 0), so the value
    at a pixel depends only on its absolute position.
    """
    ys = (np.arange(top, top + height, dtype=np.float64) / scale)
    xs = (np.arange(left, left + width, dtype=np.float64) / scale)
    y0, x0 = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    fy = _smooth((ys - y0).astype(np.float32))[:, None]
    fx = _smooth((xs - x0).astype(np.float32))[None, :]
    ly = np.arange(y0[0], y0[-1] + 2)
    lx = np.arange(x0[0], x0[-1] + 2)
    lattice = hash_uniform(seed, ly[:, None], lx[None, :])
    ry, rx = y0 - ly[0], x0 - lx[0]
    a = lattice[ry][:, rx]
    b = lattice[ry][:, rx + 1]
    c = lattice[ry + 1][:, rx]
    d = lattice[ry + 1][:, rx + 1]
    top_row = a + (b - a) * fx
    bottom_row = c + (d - c) * fx
    return top_row + (bottom_row - top_row) * fy


def fractal_noise_grid(seed: int, top: int, left: int, height: int, width: int,
                       scale: float, octaves: int = 3) -> np.ndarray:
    """Sum of value-noise octaves (scale, scale/2, ...), normalised to [0, 1); (h, w) float32."""
    total = np.zeros((height, width), np.float32)
    weight = 0.0
    for k in range(octaves):
        amp = 0.5 ** k
        total += np.float32(amp) * value_noise_grid(sub_seed(seed, k), top, left, height, width,
                                                     scale / 2 ** k)
        weight += amp
    return total / np.float32(weight)


def value_noise_points(seed: int, yx: np.ndarray, scale: float) -> np.ndarray:
    """Value noise (same field as :func:`value_noise_grid`) at arbitrary points.

    ``yx``: (N, 2) float64 pixel positions. Returns (N,) float32 in [0, 1).
    """
    ys = yx[:, 0] / scale
    xs = yx[:, 1] / scale
    y0, x0 = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    fy = _smooth((ys - y0).astype(np.float32))
    fx = _smooth((xs - x0).astype(np.float32))
    a = hash_uniform(seed, y0, x0)
    b = hash_uniform(seed, y0, x0 + 1)
    c = hash_uniform(seed, y0 + 1, x0)
    d = hash_uniform(seed, y0 + 1, x0 + 1)
    top_row = a + (b - a) * fx
    bottom_row = c + (d - c) * fx
    return top_row + (bottom_row - top_row) * fy


def fractal_noise_points(seed: int, yx: np.ndarray, scale: float, octaves: int = 3) -> np.ndarray:
    """:func:`fractal_noise_grid` at arbitrary points: (N, 2) float64 -> (N,) float32."""
    total = np.zeros(len(yx), np.float32)
    weight = 0.0
    for k in range(octaves):
        amp = 0.5 ** k
        total += np.float32(amp) * value_noise_points(sub_seed(seed, k), yx, scale / 2 ** k)
        weight += amp
    return total / np.float32(weight)


def white_noise_grid(seed: int, top: int, left: int, height: int, width: int) -> np.ndarray:
    """Zero-mean, unit-variance pixel noise (triangular distribution), (h, w) float32."""
    iy = np.arange(top, top + height)[:, None]
    ix = np.arange(left, left + width)[None, :]
    u = hash_uniform(seed, iy, ix) + hash_uniform(sub_seed(seed, 1), iy, ix)
    return (u - np.float32(1.0)) * np.float32(np.sqrt(6.0))
