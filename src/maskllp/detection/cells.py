"""Detected cells: positions, peak scores, tumour scores (and three-class probabilities)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskllp.classes import CellClass
from maskllp.detection.measurements import MEASUREMENT_NAMES
from maskllp.io.atomic import atomic_file


@dataclass
class DetectedCells:
    """The cells stage 1 found in one image.

    yx: (N, 2) float64, level-0 index coordinates (centre of pixel (r, c) is (r, c)).
    peak_score: (N,) float32, the detector's heatmap value at the peak.
    tumour_score: (N,) float32 in [0, 1], the classifier's tumour probability; NaN before the
      classifier has run.
    class_probs: (N, 3) float32 (positive tumour, negative tumour, non-tumour) for a three-class
      classifier, else None.
    shape: (H, W) of the image's level 0; mpp: its pixel size in microns.
    measurements: (N, F) float32 stain measurements
      (:data:`maskllp.detection.measurements.MEASUREMENT_NAMES`), when asked for, else None.
    trunk_features: (N, C) float16, the classifier trunk's feature vector at each cell, when asked
      for (and there is a classifier), else None.
    """

    yx: np.ndarray
    peak_score: np.ndarray
    tumour_score: np.ndarray
    class_probs: np.ndarray | None
    shape: tuple[int, int]
    mpp: float
    measurements: np.ndarray | None = None
    trunk_features: np.ndarray | None = None
    nucleus: np.ndarray | None = None
    """(N, len(NUCLEUS_NAMES)) float32 nucleus measurements, when asked for, else None."""
    patches: np.ndarray | None = None
    """(N, 2, S, S) uint8 hematoxylin / DAB patch of each cell (:mod:`maskllp.detection.patches`),
    when asked for, else None."""

    def __len__(self) -> int:
        return len(self.yx)

    def is_tumour(self, threshold: float = 0.5) -> np.ndarray:
        """(N,) bool: tumour score above ``threshold``."""
        return self.tumour_score > threshold

    def cell_classes(self, threshold: float = 0.5) -> np.ndarray:
        """(N,) int8 :class:`~maskllp.classes.CellClass` values.

        Binary classifier: TUMOUR / NON_TUMOUR by ``threshold``. Three classes: NON_TUMOUR when the
        tumour probability is not above ``threshold``, else the likelier of POSITIVE_TUMOUR and
        NEGATIVE_TUMOUR.
        """
        tumour = self.is_tumour(threshold)
        out = np.full(len(self), CellClass.NON_TUMOUR, np.int8)
        if self.class_probs is None:
            out[tumour] = CellClass.TUMOUR
            return out
        positive = self.class_probs[:, 0] >= self.class_probs[:, 1]
        out[tumour & positive] = CellClass.POSITIVE_TUMOUR
        out[tumour & ~positive] = CellClass.NEGATIVE_TUMOUR
        return out

    def subset(self, keep: np.ndarray) -> DetectedCells:
        """The cells selected by a boolean mask or index array."""
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[keep]

        return DetectedCells(self.yx[keep], self.peak_score[keep], self.tumour_score[keep],
                             pick(self.class_probs), self.shape, self.mpp, pick(self.measurements),
                             pick(self.trunk_features), pick(self.nucleus), pick(self.patches))

    def tumour_features(self, threshold: float, n_trunk: int = 0) -> np.ndarray:
        """(n, F) float32 features of the tumour cells (tumour score > ``threshold``): the stain
        measurements, then the first ``n_trunk`` trunk features. ValueError when the cells carry no
        measurements (detect with ``measure=True``)."""
        if self.measurements is None:
            raise ValueError("cell features need stain measurements: detect with measure=True")
        keep = self.is_tumour(threshold)
        parts = [self.measurements[keep].astype(np.float32)]
        if n_trunk:
            if self.trunk_features is None or self.trunk_features.shape[1] < n_trunk:
                raise ValueError(f"cell features need {n_trunk} trunk features per cell")
            parts.append(self.trunk_features[keep, :n_trunk].astype(np.float32))
        return np.concatenate(parts, axis=1)

    def tumour_patches(self, threshold: float) -> np.ndarray:
        """(n, 2, S, S) uint8 patches of the tumour cells (tumour score > ``threshold``); ValueError when
        the cells carry none (detect with ``patches=True``)."""
        if self.patches is None:
            raise ValueError("the cell network on patches needs each cell's patch: detect with patches=True")
        return self.patches[self.is_tumour(threshold)]

    def geojson_measurements(self) -> dict[str, np.ndarray]:
        """Per-cell scores for GeoJSON measurements (names as QuPath shows them): the detector's and
        classifier's scores and, when measured, the optical densities at the cell (log10 units):
        hematoxylin and DAB in the nucleus (0-2 um), the brightest ring of DAB (its 90th
        percentile; the membrane of a membrane marker)."""
        out = {"Peak score": self.peak_score, "Tumour score": self.tumour_score}
        if self.measurements is not None:
            col = {n: i for i, n in enumerate(MEASUREMENT_NAMES)}
            m = self.measurements
            out["Nucleus: Hematoxylin OD mean"] = m[:, col["hematoxylin mean 0-2 um"]]
            out["Nucleus: DAB OD mean"] = m[:, col["DAB mean 0-2 um"]]
            rings = [i for n, i in col.items() if n.startswith("DAB p90 ")]
            out["Cell: DAB OD max ring p90"] = m[:, rings].max(axis=1) if len(m) else np.zeros(0)
        if self.class_probs is not None:
            out["Positive tumour probability"] = self.class_probs[:, 0]
            out["Negative tumour probability"] = self.class_probs[:, 1]
            out["Non-tumour probability"] = self.class_probs[:, 2]
        return out


_ARRAYS = ("yx", "peak_score", "tumour_score", "class_probs", "measurements", "trunk_features", "patches")


def save_cells(path: Path, cells: DetectedCells) -> None:
    """Write ``cells`` as an ``.npz`` of plain arrays (no pickle), atomically."""
    arrays = {k: getattr(cells, k) for k in _ARRAYS if getattr(cells, k) is not None}
    arrays["shape"] = np.asarray(cells.shape, np.int64)
    arrays["mpp"] = np.asarray(cells.mpp, np.float64)
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def load_cells(path: Path) -> DetectedCells:
    """Cells written by :func:`save_cells` (``allow_pickle=False``); ValueError when damaged."""
    with np.load(path, allow_pickle=False) as data:
        try:
            values = {k: (data[k] if k in data.files else None) for k in _ARRAYS}
            shape = tuple(int(v) for v in data["shape"])
            mpp = float(data["mpp"])
        except (KeyError, OSError, ValueError) as e:
            raise ValueError(f"damaged cells file {path} ({e})") from None
    return DetectedCells(values["yx"], values["peak_score"], values["tumour_score"], values["class_probs"],
                         (shape[0], shape[1]), mpp, values["measurements"], values["trunk_features"],
                         patches=values["patches"])


def empty_cells(shape: tuple[int, int], mpp: float, three_classes: bool = False) -> DetectedCells:
    """No cells (an image of glass)."""
    probs = np.zeros((0, 3), np.float32) if three_classes else None
    return DetectedCells(np.zeros((0, 2)), np.zeros(0, np.float32), np.zeros(0, np.float32), probs,
                         shape, mpp)


def count_proportion(cells: DetectedCells, threshold: float = 0.5) -> tuple[int, int, float | None]:
    """Counting estimate of the TPS from three-class detections (the paper's Det baseline).

    Returns (positive tumour cells, negative tumour cells, positive / (positive + negative)); the
    proportion is None when no tumour cell was found (undefined, not 0). Raises ValueError for cells
    from a binary tumour classifier, which cannot tell positive from negative.
    """
    if cells.class_probs is None:
        raise ValueError(
            "counting a proportion needs a three-class classifier (classifier.classes = 'three')"
        )
    classes = cells.cell_classes(threshold)
    n_pos = int(np.count_nonzero(classes == CellClass.POSITIVE_TUMOUR))
    n_neg = int(np.count_nonzero(classes == CellClass.NEGATIVE_TUMOUR))
    total = n_pos + n_neg
    return n_pos, n_neg, (n_pos / total if total else None)
