"""Where stage 2's tumour masks come from: a :class:`MaskSource` gives, for a cohort entry, a bool mask
of the whole core at a requested (h, w).

* :class:`Stage1MaskSource` -- the paper's pipeline: stage 1 (a ``stage1`` model folder) detects the
  cells of the core, classifies them, and M is the union of disks of radius alpha around the tumour
  cells (the folder's ``[mask]`` settings).
* :class:`TruthMaskSource` -- an **oracle** for experiments on synthetic cohorts: the same disks
  around the *true* tumour cells of ``maskllp.synth`` truth. Results obtained with it measure stage 2
  alone and must be labelled as such.
* :class:`NoMaskSource` -- M = 1 over the whole core: for runs that need no tumour mask (only
  "w/o mask", ``Class``, ``O-Reg`` methods, whose networks ignore the mask anyway), so that no stage-1
  model has to run.

``cache_key`` names what a source produces (model weights hash, truth file hash, settings) so that
masks can be cached with the cohort and reused across methods and folds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from maskllp.errors import InputError
from maskllp.proportion.data import resize_mask


class MaskSource(Protocol):
    """A cohort entry -> its tumour mask over the whole core image."""

    name: str
    """``stage1``, ``truth`` or ``none`` (written into predictions and tables)."""

    @property
    def cache_key(self) -> str:
        """A short string that changes whenever the masks this source makes would change."""
        ...

    def mask(self, entry: Any, shape: tuple[int, int]) -> np.ndarray:
        """(h, w) = ``shape`` bool mask covering ``entry``'s whole image (level 0 extent)."""
        ...


def file_digest(*paths: Path, extra: str = "") -> str:
    """First 16 hex digits of the SHA-256 of the files' bytes (and ``extra``)."""
    h = hashlib.sha256(extra.encode())
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


class NoMaskSource:
    """M = 1 everywhere on the core image (False on the padding that squares it)."""

    name = "none"
    cache_key = "none"

    def mask(self, entry: Any, shape: tuple[int, int]) -> np.ndarray:
        return np.ones(shape, dtype=bool)


class Stage1MaskSource:
    """Tumour masks from a stage-1 model folder (detector + tumour classifier)."""

    name = "stage1"

    def __init__(self, model_dir: str | Path, device: str = "cpu") -> None:
        from maskllp.inference.model_folder import CONFIG_FILE, THRESHOLDS_FILE, WEIGHTS_FILE
        from maskllp.inference.stage1 import Stage1Model

        self.model_dir = Path(model_dir)
        self.model = Stage1Model.load(self.model_dir, device=device)
        if self.model.classifier is None:
            raise InputError(self.model_dir, "a detector-only model gives no tumour mask (need stage1)")
        files = [self.model_dir / n for n in (WEIGHTS_FILE, CONFIG_FILE, THRESHOLDS_FILE)]
        self._key = "stage1-" + file_digest(*[f for f in files if f.is_file()])

    @property
    def cache_key(self) -> str:
        return self._key

    def mask(self, entry: Any, shape: tuple[int, int]) -> np.ndarray:
        from maskllp.io.images import open_image

        with open_image(entry.image, entry.mpp) as reader:
            cells = self.model.detect(reader)
        return stage1_core_mask(self.model, cells, shape)


def stage1_core_mask(model: Any, cells: Any, shape: tuple[int, int]) -> np.ndarray:
    """M of a whole core from its stage-1 cells, at ``shape`` (h, w) over the same extent; bool.

    ``model`` is a ``Stage1Model``, ``cells`` its ``DetectedCells`` of the core. Training
    (:class:`Stage1MaskSource`) and prediction (``maskllp.inference.pipeline``) both build M here.
    """
    h0, w0 = cells.shape
    downsample = max(h0 / shape[0], w0 / shape[1])
    return resize_mask(model.tumour_mask(cells, downsample=downsample), shape)


class TruthMaskSource:
    """ORACLE masks: disks of radius ``alpha_um`` around the true tumour cells of a synthetic cohort.

    ``cells`` maps an image file name to the (N, 2) float64 level-0 ``yx`` of its true tumour cells
    (see :func:`truth_cells`); ``key`` identifies the truth (e.g. its file hash).
    """

    name = "truth"

    def __init__(self, cells: dict[str, np.ndarray], alpha_um: float, key: str) -> None:
        self.cells = cells
        self.alpha_um = alpha_um
        self._key = f"truth-{key}-a{alpha_um:g}"

    @property
    def cache_key(self) -> str:
        return self._key

    def mask(self, entry: Any, shape: tuple[int, int]) -> np.ndarray:
        from maskllp.detection.mask import tumour_mask
        from maskllp.io.images import open_image

        name = Path(entry.image).name
        if name not in self.cells:
            raise InputError(entry.image, "no synthetic truth for this image (oracle masks need it)")
        yx = self.cells[name]
        with open_image(entry.image, entry.mpp) as reader:
            (h0, w0), mpp = reader.shape, reader.mpp
        if mpp is None:
            raise InputError(entry.image, "pixel size unknown (give the manifest's mpp column)")
        downsample = max(h0 / shape[0], w0 / shape[1])
        m = tumour_mask(yx, np.ones(len(yx), bool), (h0, w0), self.alpha_um / mpp, downsample)
        return resize_mask(m, shape)


def truth_cells(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Image file name -> (N, 2) float64 level-0 yx of its true tumour cells (for oracle masks).

    ``path`` is a synthetic cohort's ``truth.csv``; names without truth are left out.
    """
    from maskllp.classes import CellClass
    from maskllp.synth.truth import read_truth, read_truth_cells

    truth = read_truth(path)
    out = {}
    for name in names:
        if name in truth:
            cells = read_truth_cells(truth[name].cells_path)
            out[name] = cells.yx[cells.classes != CellClass.NON_TUMOUR]
    return out


def torch_device(trainer: Any) -> str:
    """``cuda`` when the trainer settings allow a GPU and one is present, else ``cpu``."""
    import torch

    gpu_ok = trainer.accelerator in ("gpu", "cuda", "auto")
    return "cuda" if gpu_ok and torch.cuda.is_available() else "cpu"


def build_mask_source(needed_by: Sequence[str], kind: str | None, stage1: Path | None,
                      truth: Path | None, entries: Sequence[Any], config: Any) -> MaskSource:
    """The mask source a run asks for.

    ``needed_by``: the methods that use a mask (none: :class:`NoMaskSource`, nothing to run);
    ``kind``: ``stage1`` (the default when ``stage1`` is given) or ``truth`` (oracle, needs ``truth``).
    InputError, naming the option, when the methods need a mask and none is given.
    """
    kind = kind or ("stage1" if stage1 is not None else None)
    if not needed_by:
        return NoMaskSource()
    if kind is None or kind == "none":
        raise InputError(None, f"methods {', '.join(needed_by)} need a tumour mask: give --stage1 "
                               "MODEL_DIR (or, for an oracle experiment on synthetic data, --mask-source "
                               "truth with --truth TRUTH.csv)", "--methods")
    if kind == "stage1":
        if stage1 is None:
            raise InputError(None, "--mask-source stage1 needs --stage1 MODEL_DIR", "--mask-source")
        return Stage1MaskSource(stage1, torch_device(config.trainer))
    if kind == "truth":
        if truth is None:
            raise InputError(None, "--mask-source truth needs --truth TRUTH.csv", "--mask-source")
        cells = truth_cells(truth, [Path(e.image).name for e in entries])
        return TruthMaskSource(cells, config.mask.alpha_um, file_digest(truth))
    raise InputError(None, f"unknown mask source {kind!r} (stage1, truth)", "--mask-source")
