"""Stage-2 inputs: how a core becomes the network's input, one item per core, batches, augmentation.

The one way a core becomes a network input, at training, cross-validation and prediction time:
:meth:`InputSpec.fit` (where the core lands), :func:`read_input_image` (the core read at that
geometry), :func:`input_mask` (its tumour mask, made at :attr:`InputFit.content_shape` by whoever
knows the cells, put on the canvas), :func:`core_tensors` and :func:`collate_inputs` (a batch).

Two geometries (``proportion.resize``):

* ``pixel-size`` (default): every core is resampled to one pixel size, ``proportion.mpp`` microns
  (default 1.2, about the paper's effective resolution: ~10 000 px cores at ~0.25 µm/px resized to
  2048), **whole and in its own shape**, so cells have the same size in pixels whatever the scanner
  and the core's size. The canvas is the core rounded up to a multiple of 32 (the ResNet's stride),
  the core at its top left. A core larger than ``proportion.max_side`` at that pixel size is
  resampled coarser to fit (said in the log).
* ``square``: the paper's "resize to 2048": the core resized with its aspect ratio kept so that its
  longer side is ``proportion.input_size``, centred on the square.

The canvas around the core is white (255, like glass), the tumour mask False there, and the
*extent* (the core's own pixels) tells the network what is core: "w/o mask" methods and the pooled
heads of Class and O-Reg use the extent, never the padding. Batches of cores of several sizes are
padded the same way to the largest (:func:`collate_inputs`), which adds nothing to s_p or s_n.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from maskllp.config.proportion import ProportionConfig
from maskllp.errors import InputError
from maskllp.io.grid import resize_rgb
from maskllp.io.images import open_image
from maskllp.io.manifest import CohortEntry

STRIDE = 32
"""Canvas sides are multiples of the ResNet's total stride."""
Resize = Literal["pixel-size", "square"]
log = logging.getLogger("maskllp")


def _round_up(v: int, m: int) -> int:
    return -(-int(v) // m) * m


@dataclass(frozen=True)
class InputFit:
    """Where a core lands on the network's canvas: the canvas is (height, width); the core,
    resampled to (content_height, content_width), sits at (top, left)."""

    height: int
    width: int
    top: int
    left: int
    content_height: int
    content_width: int

    @property
    def content_shape(self) -> tuple[int, int]:
        return self.content_height, self.content_width

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def level0_scale(self, level0_shape: tuple[int, int]) -> np.ndarray:
        """(2,) canvas pixels per level-0 pixel (rows, columns) of a core whose level 0 is
        ``level0_shape``."""
        return np.array([self.content_height / level0_shape[0], self.content_width / level0_shape[1]])

    def from_level0(self, yx: np.ndarray, level0_shape: tuple[int, int]) -> np.ndarray:
        """(N, 2) level-0 pixel positions -> positions on the canvas (pixel centres map to pixel
        centres; the core sits at ``top``, ``left`` resampled to ``content_shape``)."""
        yx = np.asarray(yx, np.float64).reshape(-1, 2)
        return (yx + 0.5) * self.level0_scale(level0_shape) - 0.5 + np.array([self.top, self.left])

    def extent(self) -> np.ndarray:
        """(height, width) bool: the core's own pixels on the canvas."""
        out = np.zeros(self.shape, bool)
        out[self.top: self.top + self.content_height, self.left: self.left + self.content_width] = True
        return out


@dataclass(frozen=True)
class InputSpec:
    """How stage 2 sees every core (saved in its model folder, so prediction sees cores the same)."""

    resize: Resize = "pixel-size"
    mpp: float = 1.2
    """Microns per pixel of the input (``pixel-size``)."""
    size: int = 256
    """Side of the square (``square``)."""
    max_side: int = 3072
    """Longest side of a ``pixel-size`` input; larger cores are resampled coarser to fit."""

    @property
    def key(self) -> str:
        """A short name of the geometry (cache folders)."""
        if self.resize == "square":
            return f"square{self.size}"
        return f"mpp{self.mpp:g}-max{self.max_side}"

    @classmethod
    def from_config(cls, cfg: ProportionConfig) -> InputSpec:
        return cls(cfg.resize, cfg.mpp, cfg.input_size, cfg.max_side)

    def fit(self, shape: tuple[int, int], image_mpp: float | None, source: Any = None) -> InputFit:
        """Where a core of level-0 ``shape`` (H, W) at ``image_mpp`` lands.

        InputError naming ``source`` when the geometry needs a pixel size the image lacks.
        """
        h0, w0 = int(shape[0]), int(shape[1])
        if h0 < 1 or w0 < 1:
            raise ValueError(f"empty image shape {shape}")
        if self.resize == "square":
            return square_fit((h0, w0), self.size)
        if image_mpp is None:
            raise InputError(source, "pixel size unknown: stage 2 resamples cores to proportion.mpp; give "
                                     "it in the manifest's mpp column or with --mpp")
        scale = image_mpp / self.mpp
        longest = max(h0, w0) * scale
        if longest > self.max_side:
            log.warning("%s: %.0f px at %.3g um/px is over proportion.max_side %d; resampled to fit",
                        source or "a core", longest, self.mpp, self.max_side)
            scale = self.max_side / max(h0, w0)
        h = max(1, round(h0 * scale))
        w = max(1, round(w0 * scale))
        return InputFit(_round_up(h, STRIDE), _round_up(w, STRIDE), 0, 0, h, w)


def square_fit(shape: tuple[int, int], size: int) -> InputFit:
    """The aspect-preserving fit of a (H, W) image into a ``size`` x ``size`` square, centred."""
    h0, w0 = int(shape[0]), int(shape[1])
    if h0 < 1 or w0 < 1:
        raise ValueError(f"empty image shape {shape}")
    scale = size / max(h0, w0)
    h = min(size, max(1, round(h0 * scale)))
    w = min(size, max(1, round(w0 * scale)))
    return InputFit(size, size, (size - h) // 2, (size - w) // 2, h, w)


def place_on_canvas(content: np.ndarray, fit: InputFit, fill: int | bool) -> np.ndarray:
    """Put (h, w[, C]) ``content`` (already at ``fit.content_shape``) on a filled canvas."""
    if content.shape[:2] != fit.content_shape:
        raise ValueError(f"content {content.shape[:2]} does not match the fit {fit.content_shape}")
    canvas = np.full((*fit.shape, *content.shape[2:]), fill, dtype=content.dtype)
    canvas[fit.top: fit.top + fit.content_height, fit.left: fit.left + fit.content_width] = content
    return canvas


def input_fit(path: Path, mpp: float | None, spec: InputSpec) -> InputFit:
    """Where the core at ``path`` lands (reads the header only)."""
    with open_image(path, mpp) as reader:
        return spec.fit(reader.shape, reader.mpp, path)


def read_core(path: Path, mpp: float | None, spec: InputSpec) -> tuple[np.ndarray, InputFit]:
    """The core at ``path`` resampled to its fit: ((h, w, 3) uint8, fit).

    Reads the coarsest pyramid level that is still at least as fine as needed.
    """
    with open_image(path, mpp) as reader:
        fit = spec.fit(reader.shape, reader.mpp, path)
        h0, w0 = reader.shape
        level = reader.best_level(min(h0 / fit.content_height, w0 / fit.content_width))
        rgb = reader.read(level)
    return resize_rgb(rgb, fit.content_shape), fit


def read_input_image(path: Path, mpp: float | None, spec: InputSpec) -> tuple[np.ndarray, InputFit]:
    """The network's image of the core at ``path``: ((H, W, 3) uint8 canvas on white, its fit)."""
    rgb, fit = read_core(path, mpp, spec)
    return place_on_canvas(rgb, fit, 255), fit


def input_mask(content: np.ndarray, fit: InputFit) -> np.ndarray:
    """The network's mask: ``content`` ((h, w) bool at ``fit.content_shape``) on a False canvas."""
    content = np.asarray(content, dtype=bool)
    if content.shape != fit.content_shape:
        raise ValueError(f"mask {content.shape} does not match the fit {fit.content_shape}")
    return place_on_canvas(content, fit, False)


# ------------------------------------------------------------------------------------ items
def _load(array: np.ndarray | Path) -> np.ndarray:
    return np.load(array, allow_pickle=False) if isinstance(array, Path) else array


@dataclass(frozen=True)
class Stage2Item:
    """One core, ready for the network.

    ``image`` (H, W, 3) uint8 and ``mask`` (H, W) bool canvases, each an array or the path of a
    cached ``.npy`` file (read on use: a cohort of large cores need not fit in memory); use
    :meth:`load_image` / :meth:`load_mask`. ``fit`` says where the core is on the canvas (None: all
    of it). ``interval`` is the labelled interval index (None when unlabelled), ``midpoint`` its
    midpoint, ``proportion`` the exact proportion when known (synthetic truth, exact labels), else
    None. ``entry`` is the manifest row it was made from (its image file and annotations, for the
    methods that read them), when there is one. ``clicks`` (K, 3) float64: canvas row, column and
    1 / 0 (positive / negative) of the core's clicked tumour cells, when training reads them
    (``proportion.click_weight``); None otherwise.
    """

    name: str
    patient: str
    interval: int | None
    midpoint: float | None
    proportion: float | None
    image: np.ndarray | Path
    mask: np.ndarray | Path
    entry: CohortEntry | None = None
    fit: InputFit | None = None
    clicks: np.ndarray | None = None

    def load_image(self) -> np.ndarray:
        return _load(self.image)

    def load_mask(self) -> np.ndarray:
        return _load(self.mask).astype(bool, copy=False)

    def input_fit(self) -> InputFit:
        if self.fit is not None:
            return self.fit
        h, w = self.load_mask().shape
        return InputFit(h, w, 0, 0, h, w)

    @property
    def has_tumour(self) -> bool:
        return bool(np.any(self.load_mask()))


# ------------------------------------------------------------------------------------ tensors
def to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W, 3) uint8, (H, W) bool -> (3, H, W) float32 in [0, 1], (1, H, W) float32 {0, 1}."""
    img = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float() / 255.0
    return img, torch.from_numpy(np.array(mask, dtype=np.float32, copy=True))[None]


def core_tensors(image: np.ndarray, mask: np.ndarray, fit: InputFit) -> dict[str, torch.Tensor]:
    """A core's ``image`` (3, H, W) float32 in [0, 1], tumour ``mask`` and ``extent`` (1, H, W)
    float32 {0, 1}."""
    img, m = to_tensors(image, mask)
    if img.shape[-2:] != fit.shape:
        raise ValueError(f"image {tuple(img.shape[-2:])} does not match the fit {fit.shape}")
    return {"image": img, "mask": m, "extent": torch.from_numpy(fit.extent().astype(np.float32))[None]}


def augment_tensors(tensors: dict[str, torch.Tensor], quarter_turns: int, flip_h: bool, flip_v: bool
                    ) -> dict[str, torch.Tensor]:
    """Rotate by ``quarter_turns`` x 90 degrees and flip every (C, H, W) tensor the same way."""
    dims = [d for d, on in ((-1, flip_h), (-2, flip_v)) if on]
    out = {}
    for k, t in tensors.items():
        if t.dim() < 3:
            out[k] = t
            continue
        t = torch.rot90(t, quarter_turns, dims=(-2, -1))
        out[k] = torch.flip(t, dims) if dims else t
    return out


def click_counts(clicks: np.ndarray | None, shape: tuple[int, int]) -> torch.Tensor:
    """(2, H, W) float32: how many clicked positive (channel 0) and negative (channel 1) tumour cells
    fall on each pixel of a canvas of ``shape``. ``clicks`` (K, 3): row, column (rounded to the
    nearest pixel, clipped to the canvas) and 1 / 0 for positive / negative; None or empty: zeros."""
    out = torch.zeros((2, *shape), dtype=torch.float32)
    if clicks is None or not len(clicks):
        return out
    c = np.asarray(clicks, dtype=np.float64).reshape(-1, 3)
    rows = np.clip(np.rint(c[:, 0]), 0, shape[0] - 1).astype(np.int64)
    cols = np.clip(np.rint(c[:, 1]), 0, shape[1] - 1).astype(np.int64)
    channel = np.where(c[:, 2] > 0, 0, 1)
    flat = torch.from_numpy((channel * shape[0] + rows) * shape[1] + cols)
    out.view(-1).index_add_(0, flat, torch.ones(len(c)))
    return out


PAD_VALUES = {"image": 1.0, "mask": 0.0, "extent": 0.0}
"""What a batch pads with: white glass, no tumour, not core."""


def collate_inputs(batch: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack cores of any sizes: (C, H, W) tensors are padded at the bottom and right to the batch's
    largest height and width (:data:`PAD_VALUES`); other entries are stacked."""
    out: dict[str, torch.Tensor] = {}
    h = max(b["image"].shape[-2] for b in batch)
    w = max(b["image"].shape[-1] for b in batch)
    for k in batch[0]:
        if batch[0][k].dim() < 3:
            out[k] = torch.stack([b[k] for b in batch])
            continue
        c = batch[0][k].shape[0]
        t = torch.full((len(batch), c, h, w), PAD_VALUES.get(k, 0.0), dtype=batch[0][k].dtype)
        for i, b in enumerate(batch):
            t[i, :, : b[k].shape[-2], : b[k].shape[-1]] = b[k]
        out[k] = t
    return out


class Stage2Dataset(Dataset):
    """Items -> dicts of ``image`` (3, H, W), ``mask`` and ``extent`` (1, H, W), ``interval`` ()
    int64 (-1: none), and with ``clicks`` the :func:`click_counts` of each item (2, H, W); batch them
    with :func:`collate_inputs`.

    With ``augment``, each read draws a random quarter-turn count and two flips (torch's RNG, which
    Lightning seeds per worker), the same for every (C, H, W) tensor of the item.
    """

    def __init__(self, items: list[Stage2Item], augment: bool = False, clicks: bool = False) -> None:
        self.items = items
        self.augment = augment
        self.clicks = clicks

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.items[index]
        tensors = core_tensors(item.load_image(), item.load_mask(), item.input_fit())
        if self.clicks:
            tensors["clicks"] = click_counts(item.clicks, tuple(tensors["mask"].shape[-2:]))
        if self.augment:
            turns, fh, fv = torch.randint(0, 4, ()).item(), torch.rand(()) < 0.5, torch.rand(()) < 0.5
            tensors = augment_tensors(tensors, int(turns), bool(fh), bool(fv))
        interval = -1 if item.interval is None else item.interval
        return {**tensors, "interval": torch.tensor(interval, dtype=torch.int64)}
