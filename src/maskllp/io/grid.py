"""An image read on the pixel grid of another pixel size, window by window.

The networks work on a *model grid*: the image resampled to the model's training pixel size.
Model pixel (i, j) has its centre at level-0 index coordinates ((i + 0.5) s - 0.5, (j + 0.5) s - 0.5)
with s = model mpp / image mpp. :func:`read_model_window` reads any window of that grid from an
image reader by reading only the level-0 (or pyramid-level) pixels it needs, so a 10 000 px core is
never held whole. :class:`ArrayImage` gives an in-memory array the reader interface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

_SAME_SCALE_TOL = 1e-3


class ImageSource(Protocol):
    """What stage 1 needs from an image: ``maskllp.io.images.ImageReader`` provides it."""

    @property
    def shape(self) -> tuple[int, int]: ...

    @property
    def mpp(self) -> float | None: ...

    @property
    def level_downsamples(self) -> list[float]: ...

    def read_window(self, top: int, left: int, height: int, width: int, level: int = 0) -> np.ndarray: ...

    def best_level(self, downsample: float) -> int: ...


class ArrayImage:
    """An in-memory (H, W, 3) uint8 image with the reader interface (one level; white outside)."""

    def __init__(self, rgb: np.ndarray, mpp: float | None = None, path: str = "<array>") -> None:
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
        self.rgb = rgb
        self.mpp = mpp
        self.path = path

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])

    @property
    def level_shapes(self) -> list[tuple[int, int]]:
        return [self.shape]

    @property
    def level_downsamples(self) -> list[float]:
        return [1.0]

    def best_level(self, downsample: float) -> int:
        return 0

    def read(self, level: int = 0) -> np.ndarray:
        return self.rgb

    def read_window(self, top: int, left: int, height: int, width: int, level: int = 0) -> np.ndarray:
        out = np.full((height, width, 3), 255, np.uint8)
        h, w = self.shape
        r0, r1 = max(top, 0), min(top + height, h)
        c0, c1 = max(left, 0), min(left + width, w)
        if r1 > r0 and c1 > c0:
            out[r0 - top : r1 - top, c0 - left : c1 - left] = self.rgb[r0:r1, c0:c1]
        return out

    def close(self) -> None:
        pass

    def __enter__(self) -> ArrayImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class ModelGrid:
    """The model pixel grid over an image: ``scale`` level-0 pixels per model pixel."""

    image_shape: tuple[int, int]
    scale: float

    @staticmethod
    def for_image(image_shape: tuple[int, int], image_mpp: float, model_mpp: float) -> ModelGrid:
        scale = model_mpp / image_mpp
        if abs(scale - 1.0) < _SAME_SCALE_TOL:
            scale = 1.0
        return ModelGrid((int(image_shape[0]), int(image_shape[1])), scale)

    @property
    def shape(self) -> tuple[int, int]:
        """(h, w) of the grid: ceil(H / scale), ceil(W / scale)."""
        return (math.ceil(self.image_shape[0] / self.scale - 1e-9),
                math.ceil(self.image_shape[1] / self.scale - 1e-9))

    def to_level0(self, yx: np.ndarray) -> np.ndarray:
        """(N, 2) model-grid index coordinates -> level-0 index coordinates."""
        return (np.asarray(yx, np.float64) + 0.5) * self.scale - 0.5

    def from_level0(self, yx: np.ndarray) -> np.ndarray:
        """(N, 2) level-0 index coordinates -> model-grid index coordinates."""
        return (np.asarray(yx, np.float64) + 0.5) / self.scale - 0.5


def read_model_window(image: ImageSource, grid: ModelGrid, top: int, left: int, height: int,
                      width: int) -> np.ndarray:
    """(height, width, 3) uint8: a window of the model grid (white outside the image).

    At scale 1 it is a plain window read. Otherwise the coarsest pyramid level at or finer than the
    model pixel is read (with a small border), low-pass filtered when it is still finer (Gaussian,
    sigma = (s' - 1) / 2 for a remaining factor s'), and sampled bilinearly at the model pixel
    centres. Every output pixel depends only on nearby source pixels, so windows that overlap agree.
    """
    if grid.scale == 1.0:
        return image.read_window(top, left, height, width)
    from scipy import ndimage

    level = image.best_level(grid.scale)
    down = float(image.level_downsamples[level])
    factor = grid.scale / down
    sigma = max(0.0, (factor - 1.0) / 2.0)
    pad = (int(4.0 * sigma + 0.5) if sigma > 0 else 0) + 2
    ys = ((np.arange(top, top + height) + 0.5) * grid.scale) / down - 0.5
    xs = ((np.arange(left, left + width) + 0.5) * grid.scale) / down - 0.5
    r0, c0 = int(np.floor(ys[0])) - pad, int(np.floor(xs[0])) - pad
    r1, c1 = int(np.ceil(ys[-1])) + pad + 1, int(np.ceil(xs[-1])) + pad + 1
    src = image.read_window(r0, c0, r1 - r0, c1 - c0, level=level).astype(np.float32)
    if sigma > 0:
        src = ndimage.gaussian_filter(src, sigma=(sigma, sigma, 0), mode="nearest", truncate=4.0)
    rows, cols = np.meshgrid(ys - r0, xs - c0, indexing="ij")
    out = np.empty((height, width, 3), np.float32)
    for ch in range(3):
        out[..., ch] = ndimage.map_coordinates(src[..., ch], [rows, cols], order=1, mode="nearest")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def resize_rgb(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) uint8: area averaging when shrinking, bilinear when enlarging."""
    if rgb.shape[:2] == tuple(shape):
        return np.ascontiguousarray(rgb)
    shrink = shape[0] * shape[1] < rgb.shape[0] * rgb.shape[1]
    method = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    out = Image.fromarray(np.ascontiguousarray(rgb)).resize((shape[1], shape[0]), method)
    return np.asarray(out, dtype=np.uint8)


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool -> (h, w) bool: a pixel is tumour when at least half of its area is."""
    if mask.shape == tuple(shape):
        return mask.astype(bool)
    grey = Image.fromarray(mask.astype(np.uint8) * 255)
    out = np.asarray(grey.resize((shape[1], shape[0]), Image.Resampling.BOX))
    return out >= 128
