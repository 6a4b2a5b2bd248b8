"""Stage-2 inputs of a cohort for training and cross-validation: where tumour masks come from, and a
cache so they are computed once.

Where stage 2's tumour masks come from: a :class:`MaskSource` gives, for a cohort entry, a bool mask
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

For each core, the network image at the input geometry (``proportion.resize``, :class:`InputSpec`)
and its tumour mask (from a :class:`MaskSource`) are stored as ``.npy`` files under
``<cohort dir>/.maskllp-cache/`` (or ``proportion.cache_dir``)::

    images-<geometry>/<stem>-<hash>.npy                   (H, W, 3) uint8
    masks-<source key>-<geometry>/<stem>-<hash>.npy       (H, W) bool
    cells-<stage-1 key>/<stem>-<hash>.npz                 the cells stage 1 found, measured

``<hash>`` covers the image's absolute path, size and modification time, so a changed image is
recomputed; ``<source key>`` covers the stage-1 weights (or the truth file) and settings, so masks of
another model never mix in. Files are written atomically; items refer to them by path and read them
on use (``allow_pickle=False``), so a cohort of 2048-px cores does not have to fit in memory. Large cores
are read at the pyramid level nearest the needed downsample, never at full resolution when a coarser
level will do.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from maskllp.classes import CellClass
from maskllp.config import Config
from maskllp.config.training import TrainerConfig
from maskllp.detection.cells import DetectedCells, load_cells, save_cells
from maskllp.detection.mask import tumour_mask
from maskllp.detection.measurements import MEASUREMENT_NAMES
from maskllp.detection.model import Stage1Model
from maskllp.detection.patches import OD_STEPS_PER_UNIT, PATCH_SIDE_UM
from maskllp.errors import InputError
from maskllp.intervals import IntervalScheme
from maskllp.io.atomic import atomic_file
from maskllp.io.grid import resize_mask
from maskllp.io.images import open_image
from maskllp.io.manifest import CohortEntry
from maskllp.io.model_folder import CONFIG_FILE, THRESHOLDS_FILE, WEIGHTS_FILE
from maskllp.proportion.inputs import (
    InputFit,
    InputSpec,
    Stage2Item,
    input_fit,
    input_mask,
    read_input_image,
)
from maskllp.synth.truth import read_truth, read_truth_cells

CACHE_DIRNAME = ".maskllp-cache"
MEASUREMENTS_KEY = hashlib.sha256("|".join(MEASUREMENT_NAMES).encode()).hexdigest()[:8]
"""Changes when the cell measurements change, so cached cells of another definition are not reused."""
PATCHES_KEY = f"-patches{PATCH_SIDE_UM:g}um{OD_STEPS_PER_UNIT:g}"
"""Marks the cache of cells that carry their patches (:mod:`maskllp.detection.patches`)."""
log = logging.getLogger("maskllp")


class MaskSource(Protocol):
    """A cohort entry -> its tumour mask over the whole core image."""

    name: str
    """``stage1``, ``truth`` or ``none`` (written into predictions and tables)."""

    @property
    def cache_key(self) -> str:
        """A short string that changes whenever the masks this source makes would change."""
        ...

    def mask(self, entry: CohortEntry, shape: tuple[int, int]) -> np.ndarray:
        """(h, w) = ``shape`` bool mask covering ``entry``'s whole image (level 0 extent)."""
        ...


def path_digest(path: str | Path | None) -> str | None:
    """:func:`file_digest` of a file, or of every file under a folder (in name order); None for None."""
    if path is None:
        return None
    path = Path(path)
    return file_digest(*(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]))


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

    def mask(self, entry: CohortEntry, shape: tuple[int, int]) -> np.ndarray:
        return np.ones(shape, dtype=bool)


class Stage1MaskSource:
    """Tumour masks from a stage-1 model folder (detector + tumour classifier).

    Stage 1 runs once per core with its cell measurements (:meth:`cells`); with ``cells_root`` the
    cells are cached there as ``cells-<source key>/<stem>-<hash>.npz``, for the mask and for the
    cell-level method alike.
    """

    name = "stage1"

    def __init__(self, model_dir: str | Path, device: str = "cpu", cells_root: Path | None = None) -> None:
        self.cells_root = cells_root
        self.model_dir = Path(model_dir)
        self.model = Stage1Model.load(self.model_dir, device=device)
        if self.model.classifier is None:
            raise InputError(self.model_dir, "a detector-only model gives no tumour mask (need stage1)")
        files = [self.model_dir / n for n in (WEIGHTS_FILE, CONFIG_FILE, THRESHOLDS_FILE)]
        self._key = "stage1-" + file_digest(*[f for f in files if f.is_file()])

    @property
    def cache_key(self) -> str:
        return self._key

    def _cache_path(self, entry: CohortEntry, patches: bool) -> Path | None:
        if self.cells_root is None:
            return None
        folder = self.cells_root / f"cells-{self._key}-{MEASUREMENTS_KEY}{PATCHES_KEY if patches else ''}"
        return folder / f"{_fingerprint(entry.image)}.npz"

    def cells(self, entry: CohortEntry, patches: bool = False) -> DetectedCells:
        """The core's cells with their measurements, and with ``patches`` each cell's patch (from
        the cache when it holds them; cells cached with patches serve both)."""
        for with_patches in ((True,) if patches else (False, True)):
            candidate = self._cache_path(entry, with_patches)
            if candidate is not None and candidate.is_file():
                try:
                    return load_cells(candidate)
                except (OSError, ValueError):
                    log.warning("damaged cache file %s: recomputing it", candidate)
        path = self._cache_path(entry, patches)
        with open_image(entry.image, entry.mpp) as reader:
            cells = self.model.detect(reader, measure=True, patches=patches)
        if path is not None:
            try:
                save_cells(path, cells)
            except OSError as e:
                raise InputError(self.cells_root, f"cannot write the stage-1 cache ({e.strerror or e}); "
                                                  "set proportion.cache_dir to a writable folder") from None
        return cells

    def mask(self, entry: CohortEntry, shape: tuple[int, int]) -> np.ndarray:
        return self.model.mask_at(self.cells(entry), shape)


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

    def mask(self, entry: CohortEntry, shape: tuple[int, int]) -> np.ndarray:
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
    truth = read_truth(path)
    out = {}
    for name in names:
        if name in truth:
            cells = read_truth_cells(truth[name].cells_path)
            out[name] = cells.yx[cells.classes != CellClass.NON_TUMOUR]
    return out


def torch_device(trainer: TrainerConfig) -> str:
    """``cuda`` when the trainer settings allow a GPU and one is present, else ``cpu``."""
    import torch

    gpu_ok = trainer.accelerator in ("gpu", "cuda", "auto")
    return "cuda" if gpu_ok and torch.cuda.is_available() else "cpu"


def build_mask_source(needed_by: Sequence[str], kind: str | None, stage1: Path | None,
                      truth: Path | None, entries: Sequence[CohortEntry], config: Config,
                      cache_root: Path | None = None) -> MaskSource:
    """The mask source a run asks for (``cache_root``: where stage 1 caches the cells it finds).

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
        source = Stage1MaskSource(stage1, torch_device(config.trainer), cache_root)
        saved = source.model.mask
        if (saved.alpha_um, saved.tumour_threshold) != (config.mask.alpha_um, config.mask.tumour_threshold):
            log.warning("the tumour mask comes from stage 1 %s with its own settings (alpha_um %g, "
                        "tumour_threshold %g), not this run's [mask] (%g, %g): set them when training "
                        "stage 1", stage1, saved.alpha_um, saved.tumour_threshold, config.mask.alpha_um,
                        config.mask.tumour_threshold)
        return source
    if kind == "truth":
        if truth is None:
            raise InputError(None, "--mask-source truth needs --truth TRUTH.csv", "--mask-source")
        cells = truth_cells(truth, [Path(e.image).name for e in entries])
        return TruthMaskSource(cells, config.mask.alpha_um, file_digest(truth))
    raise InputError(None, f"unknown mask source {kind!r} (stage1, truth)", "--mask-source")


# ------------------------------------------------------------------------------------------ cache


def default_cache_root(cohort_path: str | Path, configured: str | Path | None = None) -> Path:
    """``configured`` when set, else ``<cohort dir>/.maskllp-cache``."""
    return Path(configured) if configured is not None else Path(cohort_path).resolve().parent / CACHE_DIRNAME


def _fingerprint(path: Path) -> str:
    """``<stem>-<hash>``: the hash covers the image's absolute path, size and modification time."""
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror or e})") from None
    text = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    return f"{p.stem[:40]}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


class ItemCache:
    """Network images and masks of cores, on disk under ``root``, for one input geometry."""

    def __init__(self, root: str | Path, spec: InputSpec) -> None:
        self.root = Path(root)
        self.spec = spec

    def _load_or_make(self, path: Path, make: Callable[[], np.ndarray]) -> Path:
        if path.is_file():
            try:
                np.load(path, mmap_mode="r", allow_pickle=False)  # reads and checks the header only
                return path
            except (OSError, ValueError):
                log.warning("damaged cache file %s: recomputing it", path)
        array = make()
        try:
            with atomic_file(path) as tmp, open(tmp, "wb") as f:
                np.save(f, array, allow_pickle=False)
        except OSError as e:
            raise InputError(self.root, f"cannot write the stage-2 cache ({e.strerror or e}); "
                                        "set proportion.cache_dir to a writable folder") from None
        return path

    def fit(self, entry: CohortEntry) -> InputFit:
        """Where ``entry``'s core lands on the canvas (reads the image header only)."""
        return input_fit(Path(entry.image), entry.mpp, self.spec)

    def image(self, entry: CohortEntry) -> Path:
        """The ``.npy`` file of the (H, W, 3) uint8 network image of ``entry``."""
        name = f"{_fingerprint(entry.image)}.npy"
        path = self.root / f"images-{self.spec.key}" / name

        def make() -> np.ndarray:
            return read_input_image(Path(entry.image), entry.mpp, self.spec)[0]

        return self._load_or_make(path, make)

    def mask(self, entry: CohortEntry, source: MaskSource) -> Path:
        """The ``.npy`` file of the (H, W) bool tumour mask of ``entry`` from ``source`` (False on the
        padding)."""
        folder = self.root / f"masks-{source.cache_key}-{self.spec.key}"
        path = folder / f"{_fingerprint(entry.image)}.npy"

        def make() -> np.ndarray:
            fit = self.fit(entry)
            return input_mask(source.mask(entry, fit.content_shape), fit)

        return self._load_or_make(path, make)


def prepare_items(
    entries: Sequence[CohortEntry],
    scheme: IntervalScheme,
    source: MaskSource,
    cache: ItemCache,
    exact: dict[str, float | None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Stage2Item]:
    """Cohort entries -> stage-2 items (each with its entry), computed or from the cache.

    ``exact`` maps an image file name to its exact proportion (synthetic truth) and wins over an
    exact label; unlabelled entries get ``interval = None``.
    """
    mids = scheme.midpoints
    items = []
    for i, e in enumerate(entries):
        label = e.label
        name = Path(e.image).name
        proportion = label.proportion if label is not None else None
        if exact is not None and name in exact:
            proportion = exact[name]
        interval = None if label is None else int(label.interval)
        items.append(Stage2Item(
            name=name, patient=str(e.patient), interval=interval,
            midpoint=None if interval is None else float(mids[interval]), proportion=proportion,
            image=cache.image(e), mask=cache.mask(e, source), entry=e, fit=cache.fit(e),
        ))
        if progress is not None:
            progress(i + 1, len(entries))
    return items
