"""The measurement tumour classifier: a small network on each cell's own measurements and its
neighbourhood, instead of (or, in the paper's way, as well as) a CNN feature at the cell.

A pathologist tells a tumour cell from a lymphocyte or a fibroblast by the nucleus (size,
darkness, shape) and by where it sits (in a nest of large nuclei, in a dense lymphoid aggregate,
alone in stroma). The features are exactly that: the hematoxylin part of the stain measurements
(:mod:`maskllp.detection.measurements`: the radial profile of hematoxylin OD, so the nucleus's size
and darkness, and its sorted sectors, so its shape) and the number of detected cells within 10, 20
and 40 µm (context at three scales). DAB is left out of the tumour decision, so positivity cannot
make a cell tumour (PD-L1-positive macrophages and lymphocytes are common); the three-class variant
(Det) also sees the DAB measurements, since it must call positivity.

Trained on the detected cells that annotations label (clicked points, cells in regions), class
balanced; measured on the 200-core dev cohort of docs/stage1.md (synthetic), trained on the
annotations of 24 cores, on the other cores' matched cells: tumour F1 0.92 against 0.83 for the
paper's ResNet-50 classifier trained on the same annotations.

With ``patches`` (``classifier.patch_features``) the network also reads each cell's 24 um
hematoxylin patch (:mod:`maskllp.detection.patches`; the DAB channel is never read, for the same
reason) through a small CNN whose output joins the measurements: the pixels show chromatin, the
nucleus's outline and the cytoplasm around it, which fixed rings only summarise (docs/stage1.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.spatial import cKDTree

from maskllp.backbones import FeatureMLP, PatchInput
from maskllp.detection.measurements import MEASUREMENT_NAMES, NUCLEUS_NAMES
from maskllp.detection.patches import OD_STEPS_PER_UNIT

CONTEXT_RADII_UM: tuple[float, ...] = (10.0, 20.0, 40.0)
CONTEXT_NAMES = tuple(f"cells within {r:g} um" for r in CONTEXT_RADII_UM)
Classes = Literal["tumour", "three"]
PATCH_CHUNK = 4096
"""Cells whose patches go through the encoder at once (bounds the memory of a large core)."""


def context_features(yx: np.ndarray, mpp: float) -> np.ndarray:
    """(N, len(CONTEXT_RADII_UM)) float32: for each cell, the number of other detected cells within
    each radius (``yx`` (N, 2) level-0 pixels, ``mpp`` microns per pixel)."""
    yx = np.asarray(yx, np.float64).reshape(-1, 2)
    out = np.zeros((len(yx), len(CONTEXT_RADII_UM)), np.float32)
    if len(yx) == 0:
        return out
    tree = cKDTree(yx * mpp)
    for k, r in enumerate(CONTEXT_RADII_UM):
        out[:, k] = tree.query_ball_point(yx * mpp, r, return_length=True) - 1
    return out


def feature_names(classes: Classes, nucleus: bool = False) -> list[str]:
    """Names of the classifier's inputs: hematoxylin measurements (all measurements for ``three``),
    with ``nucleus`` the traced nucleus's measurements, then the context counts."""
    names = [n for n in MEASUREMENT_NAMES if classes == "three" or n.startswith("hematoxylin")]
    return names + (list(NUCLEUS_NAMES) if nucleus else []) + list(CONTEXT_NAMES)


def classifier_features(measurements: np.ndarray, yx: np.ndarray, mpp: float, classes: Classes,
                        nucleus: np.ndarray | None = None) -> np.ndarray:
    """(N, F) float32 inputs of the classifier from cells' measurements (N, len(MEASUREMENT_NAMES)),
    optionally their nucleus measurements (N, len(NUCLEUS_NAMES)), level-0 positions and pixel size."""
    cols = [i for i, n in enumerate(MEASUREMENT_NAMES) if classes == "three" or n.startswith("hematoxylin")]
    parts = [np.asarray(measurements, np.float32)[:, cols]]
    if nucleus is not None:
        parts.append(np.asarray(nucleus, np.float32))
    return np.concatenate([*parts, context_features(yx, mpp)], axis=1)


@dataclass(frozen=True)
class MeasurementClassifierSpec:
    """What is needed to rebuild the classifier (stored in the stage-1 folder)."""

    classes: Classes = "tumour"
    hidden: int = 32
    dropout: float = 0.1
    nucleus: bool = False
    """Whether the inputs include the nucleus measurements."""
    patches: bool = False
    """Whether the network also reads each cell's hematoxylin patch (channel 0 of the patches)."""
    patch_width: int = 16
    """Channels of the patch encoder's first layer."""

    @property
    def n_outputs(self) -> int:
        return 1 if self.classes == "tumour" else 3


class MeasurementClassifier(FeatureMLP):
    """(N, F) classifier features -> (N, 1) tumour logit or (N, 3) class logits (positive tumour,
    negative tumour, non-tumour), one hidden layer."""

    def __init__(self, spec: MeasurementClassifierSpec) -> None:
        patches = PatchInput(1, spec.patch_width, OD_STEPS_PER_UNIT) if spec.patches else None
        super().__init__(len(feature_names(spec.classes, spec.nucleus)), spec.n_outputs, spec.hidden, 1,
                         spec.dropout, patches)
        self.spec = spec

    @property
    def feature_names(self) -> Sequence[str]:
        return feature_names(self.spec.classes, self.spec.nucleus)

    @torch.no_grad()
    def encode_patches(self, patches: np.ndarray) -> np.ndarray:
        """(N, 2, S, S) uint8 hematoxylin / DAB patches -> (N, n_encoded) float32 codes of their
        hematoxylin channel (:meth:`FeatureMLP.encode`), in chunks of :data:`PATCH_CHUNK` cells."""
        self.eval()
        device = self.mean.device
        hematoxylin = torch.from_numpy(np.ascontiguousarray(patches[:, :1]))
        chunks = [self.encode(hematoxylin[k:k + PATCH_CHUNK].to(device)).cpu().numpy()
                  for k in range(0, len(patches), PATCH_CHUNK)]
        n_encoded = self.mean.shape[0] - len(self.feature_names)
        return np.concatenate(chunks) if chunks else np.zeros((0, n_encoded), np.float32)

    @torch.no_grad()
    def logits(self, measurements: np.ndarray, yx: np.ndarray, mpp: float,
               nucleus: np.ndarray | None = None, patches: np.ndarray | None = None,
               encoded: np.ndarray | None = None) -> torch.Tensor:
        """(N, n_outputs) logits of cells (all of one image: the context counts need them all);
        ``nucleus``: their nucleus measurements, needed when the spec uses them; ``patches``: their
        (N, 2, S, S) uint8 hematoxylin / DAB patches, or ``encoded`` (:meth:`encode_patches`),
        needed when the spec reads them."""
        self.eval()
        if self.spec.nucleus and nucleus is None:
            raise ValueError("this classifier needs the cells' nucleus measurements")
        if self.spec.patches and patches is None and encoded is None:
            raise ValueError("this classifier needs the cells' patches")
        device = self.mean.device
        x = torch.from_numpy(classifier_features(measurements, yx, mpp, self.spec.classes,
                                                 nucleus if self.spec.nucleus else None)).to(device)
        if not self.spec.patches:
            return self(x)
        if encoded is None:
            assert patches is not None
            encoded = self.encode_patches(patches)
        return self(x, encoded=torch.from_numpy(encoded).to(device))
