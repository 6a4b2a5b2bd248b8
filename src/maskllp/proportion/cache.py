"""Stage-2 inputs of a cohort, computed once and cached with it.

For each core, the image fitted into the ``input_size`` square and its tumour mask (from a
:class:`~maskllp.proportion.masks.MaskSource`) are stored as ``.npy`` files under
``<cohort dir>/.maskllp-cache/`` (or ``proportion.cache_dir``)::

    images-<input_size>/<stem>-<hash>.npy                 (S, S, 3) uint8
    masks-<source key>-<input_size>/<stem>-<hash>.npy     (S, S) bool

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
from typing import Any

import numpy as np

from maskllp.errors import InputError
from maskllp.intervals import IntervalScheme
from maskllp.io.atomic import atomic_file
from maskllp.proportion.data import SquareFit, Stage2Item, place_on_square, resize_rgb, square_fit
from maskllp.proportion.masks import MaskSource

CACHE_DIRNAME = ".maskllp-cache"
log = logging.getLogger("maskllp")


def default_cache_root(cohort_path: str | Path, configured: str | Path | None = None) -> Path:
    """``configured`` when set, else ``<cohort dir>/.maskllp-cache``."""
    return Path(configured) if configured is not None else Path(cohort_path).resolve().parent / CACHE_DIRNAME


def image_fit(path: Path, mpp: float | None, size: int) -> SquareFit:
    """Where the core at ``path`` lands in the ``size`` square (reads the header only)."""
    from maskllp.io.images import open_image

    with open_image(path, mpp) as reader:
        return square_fit(reader.shape, size)


def read_core(path: Path, mpp: float | None, size: int) -> tuple[np.ndarray, SquareFit]:
    """The core at ``path`` resized to its fit in the ``size`` square: ((h, w, 3) uint8, fit).

    Reads the coarsest pyramid level that is still at least as fine as needed.
    """
    from maskllp.io.images import open_image

    with open_image(path, mpp) as reader:
        fit = square_fit(reader.shape, size)
        h0, w0 = reader.shape
        level = reader.best_level(min(h0 / fit.height, w0 / fit.width))
        rgb = reader.read(level)
    return resize_rgb(rgb, fit.content_shape), fit


def _fingerprint(path: Path, size: int) -> str:
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror or e})") from None
    text = f"{p}|{st.st_size}|{st.st_mtime_ns}|{size}"
    return f"{p.stem[:40]}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


class ItemCache:
    """Fitted images and masks of cores, on disk under ``root``, for one ``input_size``."""

    def __init__(self, root: str | Path, input_size: int) -> None:
        self.root = Path(root)
        self.input_size = input_size

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

    def image(self, entry: Any) -> Path:
        """The ``.npy`` file of the (S, S, 3) uint8 fitted core of ``entry`` (``.image``, ``.mpp``)."""
        path = self.root / f"images-{self.input_size}" / f"{_fingerprint(entry.image, self.input_size)}.npy"

        def make() -> np.ndarray:
            rgb, fit = read_core(Path(entry.image), entry.mpp, self.input_size)
            return place_on_square(rgb, fit, 255)

        return self._load_or_make(path, make)

    def mask(self, entry: Any, source: MaskSource) -> Path:
        """The ``.npy`` file of the (S, S) bool tumour mask of ``entry`` from ``source`` (False on the
        padding)."""
        folder = self.root / f"masks-{source.cache_key}-{self.input_size}"
        path = folder / f"{_fingerprint(entry.image, self.input_size)}.npy"

        def make() -> np.ndarray:
            fit = image_fit(Path(entry.image), entry.mpp, self.input_size)
            m = np.asarray(source.mask(entry, fit.content_shape), dtype=bool)
            if m.shape != fit.content_shape:
                raise ValueError(f"mask source {source.name} gave {m.shape}, not {fit.content_shape}")
            return place_on_square(m, fit, False)

        return self._load_or_make(path, make)


def prepare_items(
    entries: Sequence[Any],
    scheme: IntervalScheme,
    source: MaskSource,
    cache: ItemCache,
    exact: dict[str, float | None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Stage2Item]:
    """Cohort entries (``maskllp.io.manifest.CohortEntry``) -> stage-2 items, computed or from cache.

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
            image=cache.image(e), mask=cache.mask(e, source),
        ))
        if progress is not None:
            progress(i + 1, len(entries))
    return items
