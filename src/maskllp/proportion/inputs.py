"""Stage-2 inputs: how a core becomes the network's input, one item per core, augmentation.

The one way a core becomes a network input, at training, cross-validation and prediction time:
:func:`read_input_image` (the core read and fitted into the square), :func:`input_mask` (its tumour
mask, made at :attr:`SquareFit.content_shape` by whoever knows the cells, put on the square) and
:func:`to_tensors`.

Cores are **fitted into a square** of side ``input_size``: resized with their aspect ratio kept
(the longer side becomes ``input_size``) and centred on white (255, like glass), the mask on False.
The paper resizes to 2048 x 2048; keeping the aspect ratio keeps the shape and size of cells -- what
the maps measure -- the same for every core, whatever its bounding box. The padding is never tumour
and, for "w/o mask" methods, never part of M.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from maskllp.io.grid import resize_rgb
from maskllp.io.images import open_image
from maskllp.io.manifest import CohortEntry


def _load(array: np.ndarray | Path) -> np.ndarray:
    return np.load(array, allow_pickle=False) if isinstance(array, Path) else array


@dataclass(frozen=True)
class Stage2Item:
    """One core, ready for the network.

    ``image`` (S, S, 3) uint8 and ``mask`` (S, S) bool, each an array or the path of a cached
    ``.npy`` file (read on use: a cohort of 2048-px cores need not fit in memory); use
    :meth:`load_image` / :meth:`load_mask`. ``interval`` is the labelled interval index (None when
    unlabelled), ``midpoint`` its midpoint, ``proportion`` the exact proportion when known
    (synthetic truth, exact labels), else None. ``entry`` is the manifest row it was made from
    (its image file and annotations, for the methods that read them: Det), when there is one.
    """

    name: str
    patient: str
    interval: int | None
    midpoint: float | None
    proportion: float | None
    image: np.ndarray | Path
    mask: np.ndarray | Path
    entry: CohortEntry | None = None

    def load_image(self) -> np.ndarray:
        return _load(self.image)

    def load_mask(self) -> np.ndarray:
        return _load(self.mask).astype(bool, copy=False)

    @property
    def has_tumour(self) -> bool:
        return bool(np.any(self.load_mask()))


@dataclass(frozen=True)
class SquareFit:
    """Where a (H, W) core lands in the ``size`` square: content (h, w) at (top, left)."""

    size: int
    height: int
    width: int
    top: int
    left: int

    @property
    def content_shape(self) -> tuple[int, int]:
        return self.height, self.width


def square_fit(shape: tuple[int, int], size: int) -> SquareFit:
    """The aspect-preserving fit of a (H, W) image into a ``size`` x ``size`` square, centred."""
    h0, w0 = int(shape[0]), int(shape[1])
    if h0 < 1 or w0 < 1:
        raise ValueError(f"empty image shape {shape}")
    scale = size / max(h0, w0)
    h = min(size, max(1, round(h0 * scale)))
    w = min(size, max(1, round(w0 * scale)))
    return SquareFit(size, h, w, (size - h) // 2, (size - w) // 2)


def place_on_square(content: np.ndarray, fit: SquareFit, fill: int | bool) -> np.ndarray:
    """Put (h, w[, C]) ``content`` (already at ``fit.content_shape``) on a filled square canvas."""
    if content.shape[:2] != fit.content_shape:
        raise ValueError(f"content {content.shape[:2]} does not match the fit {fit.content_shape}")
    canvas = np.full((fit.size, fit.size, *content.shape[2:]), fill, dtype=content.dtype)
    canvas[fit.top: fit.top + fit.height, fit.left: fit.left + fit.width] = content
    return canvas


def input_fit(path: Path, mpp: float | None, size: int) -> SquareFit:
    """Where the core at ``path`` lands in the ``size`` square (reads the header only)."""
    with open_image(path, mpp) as reader:
        return square_fit(reader.shape, size)


def read_core(path: Path, mpp: float | None, size: int) -> tuple[np.ndarray, SquareFit]:
    """The core at ``path`` resized to its fit in the ``size`` square: ((h, w, 3) uint8, fit).

    Reads the coarsest pyramid level that is still at least as fine as needed.
    """
    with open_image(path, mpp) as reader:
        fit = square_fit(reader.shape, size)
        h0, w0 = reader.shape
        level = reader.best_level(min(h0 / fit.height, w0 / fit.width))
        rgb = reader.read(level)
    return resize_rgb(rgb, fit.content_shape), fit


def read_input_image(path: Path, mpp: float | None, size: int) -> tuple[np.ndarray, SquareFit]:
    """The network's image of the core at ``path``: ((size, size, 3) uint8 on white, its fit)."""
    rgb, fit = read_core(path, mpp, size)
    return place_on_square(rgb, fit, 255), fit


def input_mask(content: np.ndarray, fit: SquareFit) -> np.ndarray:
    """The network's mask: ``content`` ((h, w) bool at ``fit.content_shape``) on a False square."""
    content = np.asarray(content, dtype=bool)
    if content.shape != fit.content_shape:
        raise ValueError(f"mask {content.shape} does not match the fit {fit.content_shape}")
    return place_on_square(content, fit, False)


# ------------------------------------------------------------------------------------ augmentation
def augment_pair(
    image: torch.Tensor, mask: torch.Tensor, quarter_turns: int, flip_h: bool, flip_v: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate by ``quarter_turns`` x 90 degrees and flip, identically: (C, S, S) and (1, S, S)."""
    dims: list[int] = []
    if flip_h:
        dims.append(-1)
    if flip_v:
        dims.append(-2)
    out = []
    for t in (image, mask):
        t = torch.rot90(t, quarter_turns, dims=(-2, -1))
        out.append(torch.flip(t, dims) if dims else t)
    return out[0], out[1]


def to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, S, 3) uint8, (S, S) bool -> (3, S, S) float32 in [0, 1], (1, S, S) float32 {0, 1}."""
    img = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float() / 255.0
    return img, torch.from_numpy(np.array(mask, dtype=np.float32, copy=True))[None]


class Stage2Dataset(Dataset):
    """Items -> dicts of ``image`` (3, S, S), ``mask`` (1, S, S), ``interval`` () int64 (-1: none).

    With ``augment``, each read draws a random quarter-turn count and two flips (torch's RNG, which
    Lightning seeds per worker).
    """

    def __init__(self, items: list[Stage2Item], augment: bool = False) -> None:
        self.items = items
        self.augment = augment

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.items[index]
        image, mask = to_tensors(item.load_image(), item.load_mask())
        if self.augment:
            turns, fh, fv = torch.randint(0, 4, ()).item(), torch.rand(()) < 0.5, torch.rand(()) < 0.5
            image, mask = augment_pair(image, mask, int(turns), bool(fh), bool(fv))
        interval = -1 if item.interval is None else item.interval
        return {"image": image, "mask": mask, "interval": torch.tensor(interval, dtype=torch.int64)}
