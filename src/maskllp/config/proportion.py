"""Settings of stage 2, the proportion network, its losses and its training (section ``[proportion]``).

The loss settings form a sub-section, ``[proportion.loss]``. Every default follows the paper where
the paper says something (Adam, lr 1e-4, batch 16, 100 epochs, patience 30, gamma 0 for '0-1 %' and 2
for the other intervals). Where it departs, for a reason measured in docs/benchmark-table1.md: every
core is seen at one pixel size (``mpp`` 1.2, the paper's effective resolution) whole and in its own
shape instead of squashed to a 2048 px square (``resize = "square"`` keeps the paper's way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass
class LossConfig:
    """Hyper-parameters of the Table 1 losses (section ``[proportion.loss]``)."""

    gammas: list[float] | None = None
    """Weighted focal proportion loss ('Ours'): one gamma per interval of the scheme. Unset: 0 for the
    first interval and 2 for the others (the paper's choice for its five intervals)."""
    focal_gamma: float = 2.0
    """FocalProp: the one gamma used for every interval."""
    interval_weights: list[float] | None = None
    """WProp: one weight per interval. Unset: proportional to 1 / interval width, normalised to mean 1
    over the intervals (the narrow '0-1 %' interval weighs most)."""
    listnet_weight: float = 1.0
    """WProp + ListNet: weight of the ListNet ranking term added to WProp."""
    eps: float = 1e-6
    """Predicted proportions are clamped to [eps, 1 - eps] inside logarithms."""

    def __post_init__(self) -> None:
        if not 0 < self.eps < 0.01:
            raise ValueError(f"loss.eps must lie in (0, 0.01), got {self.eps}")
        if self.focal_gamma < 0:
            raise ValueError(f"loss.focal_gamma must be >= 0, got {self.focal_gamma}")
        if self.gammas is not None and any(g < 0 for g in self.gammas):
            raise ValueError(f"loss.gammas must be >= 0, got {self.gammas}")
        if self.interval_weights is not None and any(w <= 0 for w in self.interval_weights):
            raise ValueError(f"loss.interval_weights must be > 0, got {self.interval_weights}")
        if self.listnet_weight < 0:
            raise ValueError(f"loss.listnet_weight must be >= 0, got {self.listnet_weight}")


MAX_ENSEMBLE = 64
"""Most networks a cell model (``ensemble``) may hold: a damaged folder must not allocate without bound."""


@dataclass
class CellMethodConfig:
    """The cell-level method ``ours-cells`` (section ``[proportion.cells]``): a small network on each
    tumour cell's stain measurements (and trunk features) trained on the cores' interval labels,
    plus the clicked positive / negative cells of the point-annotated cores."""

    trunk_features: bool = False
    """Also feed the stage-1 CNN classifier trunk's feature vector at each cell (not only its stain
    measurements). Off by default: on the dev cohort of docs/benchmark-table1.md they lowered the
    per-cell macro F1 (0.707 against 0.709) and the mF1 (0.234 against 0.282)."""
    hidden: int = 64
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-2
    """AdamW's decoupled weight decay (PyTorch's own default). Raised from 1e-4 after the cell method
    was measured to lose on held-out high-TPS cores what it fits on its training cores
    (docs/benchmark-table1.md): mF1 0.469 -> 0.494, MAE 6.5 -> 5.7 pp on one cohort, unchanged
    (0.527 -> 0.526, 5.9 -> 6.0 pp) on the other."""
    batch_size: int = 16
    """Cores per batch."""
    max_epochs: int = 300
    patience: int = 40
    click_weight: float = 1.0
    """Weight of the cross-entropy on clicked positive / negative tumour cells, added to the
    proportion loss of the cores (0: interval labels only)."""
    entropy_weight: float = 0.0
    """Weight of the mean binary entropy of the cells' p(positive), added to the loss: it pushes each
    cell towards a confident call, so that the count of calls (the TPS) agrees with the mean the
    proportion loss constrains (entropy regularisation, common in learning from label proportions)."""
    refit: bool = True
    """After early stopping has chosen the number of epochs on the validation split, train the
    network again on every training core (validation ones included) for that many epochs: the usual
    final fit. Measured (docs/benchmark-table1.md): MAE 8.4 -> 7.8 pp (dev cohort) and 6.6 -> 6.3 pp
    (Table 1 cohort), per-cell macro F1 0.859 -> 0.872 and 0.799 -> 0.810."""
    patch_width: int = 16
    """``ours-cells-cnn``: channels of the patch encoder's first layer (:mod:`maskllp.detection.patches`)."""
    patch_max_epochs: int = 60
    """``ours-cells-cnn``: at most this many epochs (an epoch over patches costs ~100x one over
    measurements)."""
    patch_patience: int = 12
    ensemble: int = 1
    """Networks trained per model, from the seeds ``seed``, ``seed + 1``, ...; a cell's logit is the
    mean of theirs. The number of epochs (and the TPS range temperature) is chosen once, on the
    validation split; with ``refit`` every member is then trained on all training cores for that
    many epochs, without it each member early-stops on the same split. Costs ``ensemble`` times the
    final fit."""
    self_label_rounds: int = 0
    """Rounds of self-labelling after the fit: each round gives every cell of a labelled training core
    a hard label whose count agrees with the core's interval (its highest-p cells positive,
    :func:`maskllp.training.cells.interval_consistent_labels`) and trains the network(s) again, as
    the final fit was trained, with their cross-entropy added (``self_label_weight``). Clicked
    cells keep their clicks. 0: off."""
    self_label_weight: float = 1.0
    estimate: Literal["mean", "count"] = "count"
    """A core's TPS: the share of its tumour cells with p(positive) > 0.5 (``count``: what a
    pathologist, or QuPath, would count from the per-cell calls), or their mean p(positive)."""
    stain_jitter: float = 0.0
    """Strength s of a random stain variation of each training core, drawn anew every epoch: its
    hematoxylin and DAB optical densities scaled by ``1 + U(-s, s)`` and shifted by ``U(-s, s)``
    (HED jitter, Tellez et al. 2018), applied to the cells' stain measurements directly (they change
    exactly as they would on the re-stained image; :func:`maskllp.training.cells.stain_jittered`).
    The label of a core does not change with its stain, so the network learns calls that hold across
    slides and labs. ``ours-cells-cnn``'s patches are not re-stained. 0: off."""
    calibrate_calls: bool = False
    """Shift every cell's logit by one bias b chosen on the validation cores, the b whose counts fall
    nearest their labelled intervals (:func:`maskllp.proportion.cells.fit_call_bias`): a network
    trained on bags of mostly negative cores leans negative on the cells it cannot separate. The
    calls, the count, p(positive) and the range all use the shifted logits."""

    def __post_init__(self) -> None:
        if self.ensemble > MAX_ENSEMBLE:
            raise ValueError(f"cells: ensemble must be at most {MAX_ENSEMBLE} (what a model folder may hold)")
        if min(self.hidden, self.batch_size, self.max_epochs, self.patch_width, self.patch_max_epochs,
               self.ensemble) < 1 or self.lr <= 0:
            raise ValueError("cells: hidden, batch_size, max_epochs, patch_width, patch_max_epochs, ensemble "
                             "must be >= 1 and lr > 0")
        if not 0 <= self.stain_jitter < 1:
            raise ValueError("cells: stain_jitter must be in [0, 1) (a scale 1 +- s must stay positive)")
        if not 0 <= self.dropout < 1 or min(self.weight_decay, self.click_weight, self.entropy_weight,
                                            self.self_label_weight, self.self_label_rounds) < 0:
            raise ValueError("cells: dropout in [0, 1), weight_decay, click_weight, entropy_weight, "
                             "self_label_rounds and self_label_weight >= 0")


@dataclass
class ProportionConfig:
    method: str = "ours"
    """Name of a Table 1 method in the registry (``maskllp.methods``)."""
    resize: Literal["pixel-size", "square"] = "pixel-size"
    """How a core becomes the network's input: resampled to ``mpp``, whole and in its own shape
    (cells of one size in pixels whatever the scanner), or the paper's square of ``input_size``."""
    mpp: float = 1.2
    """Pixel size (microns) of the network input with ``resize = "pixel-size"``: about the paper's
    (~10 000 px cores at ~0.25 um/px resized to 2048 px)."""
    max_side: int = 3072
    """Longest input side with ``resize = "pixel-size"``; larger cores are resampled coarser."""
    input_size: int = 256
    """Side of the square with ``resize = "square"`` (the paper: 2048). A multiple of 32 (the
    ResNet's total stride)."""
    lr: float = 1e-4
    schedule: Literal["constant", "cosine"] = "cosine"
    """Learning rate over training: constant (the paper says no more than Adam at ``lr``) or a
    linear warm-up over ``warmup_fraction`` of the steps, then a cosine decay to 0."""
    warmup_fraction: float = 0.05
    input_channels: Literal["rgb", "stain"] = "rgb"
    """What the network sees: the RGB image (ImageNet-normalised), or its hematoxylin, eosin and DAB
    optical densities (colour deconvolution), which separate the brown of DAB from the blue of the
    counterstain whatever the scanner's colour balance."""
    batch_size: int = 16
    max_epochs: int = 100
    patience: int = 30
    """Early stopping: epochs without improvement of ``monitor`` on the validation split."""
    max_steps: int = -1
    """Stop after this many optimiser steps (-1: no limit; for smoke tests and benchmarks)."""
    val_fraction: float = 0.2
    """Fraction of the training cores held out (stratified by interval) for early stopping."""
    monitor: Literal["val_loss", "val_mf1"] = "val_loss"
    """What early stopping and best-weight selection watch: the method's own validation loss, or the
    validation macro-F1 over the intervals. The loss is continuous; macro-F1 on a small validation
    split is coarse (it plateaus at its "everything is 0-1 %" value, and the first epoch wins ties)."""
    augment: bool = True
    """Random 90-degree rotations and horizontal / vertical flips, the same for image and mask."""
    pretrained_weights: Path | None = None
    """Local ImageNet ResNet-18 weights file (torchvision state dict); random init when unset."""
    click_weight: float = 0.0
    """Map methods: weight of the cross-entropy of the positive share F_p / (F_p + F_n) at the
    clicked positive / negative tumour cells of the point-annotated training cores, added to the
    proportion loss (those cores then always train). 0: interval labels only, as in the paper."""
    cache_dir: Path | None = None
    """Where resized cores and tumour masks are cached; unset: ``<cohort dir>/.maskllp-cache``."""
    loss: LossConfig = field(default_factory=LossConfig)
    cells: CellMethodConfig = field(default_factory=CellMethodConfig)

    def __post_init__(self) -> None:
        if self.input_size < 32 or self.input_size % 32:
            raise ValueError(f"input_size must be a multiple of 32 (>= 32), got {self.input_size}")
        if not (math.isfinite(self.mpp) and 0.05 <= self.mpp <= 50):
            raise ValueError(f"mpp must lie in [0.05, 50] microns, got {self.mpp}")
        if self.max_side < 64:
            raise ValueError(f"max_side must be >= 64, got {self.max_side}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        if self.batch_size < 1 or self.lr <= 0 or self.max_epochs < 1:
            raise ValueError("batch_size and max_epochs must be >= 1 and lr > 0")
        if not (math.isfinite(self.click_weight) and self.click_weight >= 0):
            raise ValueError(f"click_weight must be >= 0, got {self.click_weight}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must lie in [0, 1), got {self.warmup_fraction}")
        if self.patience < 0 or not (self.max_steps == -1 or self.max_steps >= 1):
            raise ValueError("patience must be >= 0 and max_steps -1 (no limit) or >= 1")
