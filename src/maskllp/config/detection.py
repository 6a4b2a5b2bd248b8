"""Settings of stage 1: detector, tumour classifier, tumour mask, tiling.

Lengths that describe tissue (heatmap sigma, peak distance, matching radius, mask radius) are in
microns and converted with the pixel size of the image at hand, so one config serves scans of any
resolution. Network inputs are resampled to the model's training pixel size (``mpp`` of the model
folder) before either network sees them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from maskllp.config.checks import at_least, below_one, non_empty, positive, within


@dataclass
class DetectorConfig:
    """Heatmap U-Net cell detector (section ``[detector]``)."""

    sigma_um: float = 2.0
    """Gaussian sigma of the centre heatmap, in microns (converted with the pixel size)."""
    lr: float = 1e-3
    batch_size: int = 8
    max_epochs: int = 100
    patience: int = 15
    """Early stopping: epochs without a better validation loss before training stops."""
    steps_per_epoch: int = 50
    """Random crops drawn per epoch are ``steps_per_epoch * batch_size``."""
    crop: int = 128
    """Side of the random training crops, in model pixels (a multiple of the U-Net stride)."""
    base_channels: int = 16
    """Channels of the U-Net's first level; each level below doubles them."""
    depth: int = 4
    """U-Net levels (``depth - 1`` poolings, so the total stride is ``2 ** (depth - 1)``)."""
    stain_jitter: float = 0.05
    """Hematoxylin/eosin/DAB jitter: each stain channel is scaled by ``1 + U(-s, s)`` and shifted
    by ``U(-s, s)`` (Tellez et al. 2018); 0 switches stain augmentation off."""
    val_fraction: float = 0.25
    """The bottom band of each point-annotated image (this fraction of its rows) is held out to
    validate the network and choose the peak threshold and distance; 0 chooses them on the
    training area (not recommended)."""
    match_radius_um: float = 4.0
    """A detection matches an annotated point within this distance (one-to-one, Hungarian)."""
    min_distance_um: list[float] = field(default_factory=lambda: [2.0, 3.0, 4.0, 5.0, 6.0, 8.0])
    """Candidate minimum distances between peaks, in microns; the best on validation is saved."""
    thresholds: list[float] = field(
        default_factory=lambda: [round(0.05 * k, 2) for k in range(1, 19)]
    )
    """Candidate peak thresholds (heatmap value); the best on validation is saved."""
    mpp: float | None = 0.5
    """Pixel size (microns per pixel) stage 1 works at; every image is resampled to it. 0.5 um/px
    (a 20x scan; QuPath's cell detection default) resolves nuclei well; a 40x scan (0.25 um/px) is
    halved, which makes stage 1 about four times cheaper. Unset (None): the pixel size of the first
    training image."""
    default_mpp: float | None = None
    """Pixel size assumed for an image whose manifest row and file metadata give none; unset: such
    an image is an error."""

    def __post_init__(self) -> None:
        s = "detector"
        positive(s, sigma_um=self.sigma_um, lr=self.lr, match_radius_um=self.match_radius_um, mpp=self.mpp,
                 default_mpp=self.default_mpp)
        at_least(s, 1, batch_size=self.batch_size, max_epochs=self.max_epochs,
                 steps_per_epoch=self.steps_per_epoch, base_channels=self.base_channels)
        at_least(s, 0, patience=self.patience)
        at_least(s, 16, crop=self.crop)
        within(s, 2, 7, depth=self.depth)
        below_one(s, val_fraction=self.val_fraction)
        non_empty(s, min_distance_um=self.min_distance_um, thresholds=self.thresholds)
        positive(s, **{f"min_distance_um[{i}]": v for i, v in enumerate(self.min_distance_um)})


@dataclass
class ClassifierConfig:
    """Tumour / non-tumour cell classifier (section ``[classifier]``)."""

    kind: Literal["measurements", "cnn"] = "measurements"
    """``measurements``: a small network on each cell's hematoxylin measurements (nucleus size,
    darkness, shape) and its neighbourhood (cells within 10, 20, 40 um); ``cnn``: the paper's
    classifier, a ResNet trunk's feature map read at each cell and a linear head. On the dev cohort
    of docs/stage1.md the measurements reach tumour F1 0.92 where the CNN reaches 0.83 from the same
    annotations."""
    nucleus_features: bool = False
    """Measurement classifier: also the nucleus traced in the hematoxylin OD around each cell (area,
    eccentricity, mean and spread of its OD, its contrast: :func:`maskllp.detection.measurements.
    nucleus_measurements`), next to the radial profile (docs/stage1.md, measured)."""
    patch_features: bool | None = None
    """Measurement classifier: also read each cell's 24 um hematoxylin patch (never the DAB) through a
    small CNN whose output joins the measurements. None (the default): on for the tumour classifier,
    off for the three-class one (Det), as measured (docs/stage1.md): for the tumour decision, on
    four synthetic cohorts from the same annotations, tumour F1 0.93 -> 0.96, macrophages called
    tumour 85 -> 46 %, lymphocytes on the lymphocyte cohort 8.5 -> 4.3 % (on another lab's stain,
    without stain copies, 0.88 -> 0.85); Det's TPS was no better with them (mF1 0.40 -> 0.32, MAE
    12.1 pp both). True / False: on / off for either. Stage-1 folders saved before this setting
    existed read no patches."""
    patch_lr: float = 1e-3
    patch_patience: int = 20
    """Learning rate and early-stopping patience (epochs) of a classifier that reads patches: its
    CNN's batch norm makes the validation loss noisy for the first epochs at ``measurement_lr``,
    so it learns slower and waits longer before stopping."""
    stain_copies: int = 0
    """Measurement classifier: also measure each labelled cell on this many stain-jittered copies of
    its image (``stain_jitter`` strength, a new draw per copy) and train on all, so the hematoxylin
    and DAB measurements it learns from span a range of stains, not the few annotated cores' own
    (0: the images as they are)."""
    hidden: int = 32
    """Hidden units of the measurement classifier."""
    dropout: float = 0.1
    weight_decay: float = 0.05
    """AdamW weight decay of the measurement classifier (it learns from a few hundred cells)."""
    measurement_lr: float = 3e-3
    measurement_epochs: int = 300
    """Most epochs of the measurement classifier (full passes over the labelled cells; early
    stopping after ``patience`` epochs without a better validation loss)."""
    lr: float = 2e-4
    batch_size: int = 16
    max_epochs: int = 100
    patience: int = 15
    steps_per_epoch: int = 25
    pretrained_weights: Path | None = None
    """Local ImageNet ResNet-50 weights file (torchvision state dict); random init when unset."""
    backbone: str = "resnet50"
    """torchvision ResNet whose trunk gives the feature map (``resnet18`` ... ``resnet101``)."""
    feature_layer: Literal["layer1", "layer2", "layer3", "layer4"] = "layer3"
    """Last ResNet stage of the trunk: its output is the feature map read at each cell (stride 4,
    8, 16 or 32 pixels)."""
    classes: Literal["tumour", "three"] = "tumour"
    """``tumour``: tumour vs non-tumour (sigmoid, BCE). ``three``: positive tumour, negative
    tumour, non-tumour (softmax, cross-entropy; the paper's Det baseline)."""
    crop: int = 192
    """Side of the training crops, in model pixels (a multiple of the feature stride)."""
    stain_jitter: float = 0.2
    """Stain augmentation as for the detector, strong ("HED-strong", Tellez et al. 2019). The paper
    names rotations and flips only; with few annotated cores and no ImageNet weights, strong jitter
    made g generalise to unseen patients' stains (measured in docs/stage1.md)."""
    balance: bool = True
    """Centre training crops on cells drawn with equal probability per class."""
    val_fraction: float = 0.25
    """The bottom band of each annotated image is held out for validation (early stopping)."""

    @property
    def reads_patches(self) -> bool:
        """Whether the measurement classifier reads patches (``patch_features``, None resolved)."""
        return self.patch_features if self.patch_features is not None else self.classes == "tumour"

    def __post_init__(self) -> None:
        s = "classifier"
        positive(s, lr=self.lr, measurement_lr=self.measurement_lr, patch_lr=self.patch_lr)
        at_least(s, 1, batch_size=self.batch_size, max_epochs=self.max_epochs, hidden=self.hidden,
                 steps_per_epoch=self.steps_per_epoch, measurement_epochs=self.measurement_epochs)
        at_least(s, 0, patience=self.patience, patch_patience=self.patch_patience,
                 weight_decay=self.weight_decay, stain_jitter=self.stain_jitter,
                 stain_copies=self.stain_copies)
        at_least(s, 16, crop=self.crop)
        below_one(s, val_fraction=self.val_fraction, dropout=self.dropout)


@dataclass
class MaskConfig:
    """Tumour mask M (section ``[mask]``)."""

    alpha_um: float = 5.0
    """Disk radius around each tumour cell, in microns (about one tumour-cell radius)."""
    tumour_threshold: float = 0.5
    """A cell is a tumour cell when its tumour score exceeds this."""
    downsample: float = 1.0
    """Resolution of the written mask: one mask pixel per ``downsample`` level-0 pixels."""

    def __post_init__(self) -> None:
        at_least("mask", 0, alpha_um=self.alpha_um)
        within("mask", 0, 1, tumour_threshold=self.tumour_threshold)
        within("mask", 1e-3, 1e4, downsample=self.downsample)


@dataclass
class TilingConfig:
    """How large images are cut for stage 1 (section ``[tiling]``).

    Each tile's interior is ``tile`` model pixels square; the networks see it with ``overlap``
    extra pixels of context on every side, so results do not depend on where tiles fall. Both are
    rounded up to a multiple of the networks' stride.
    """

    tile: int = 512
    overlap: int | None = None
    """Context on each side of a tile (model pixels). None (the default): what the networks need,
    no more: the U-Net's receptive radius plus the peak rule's distance, or the reach of the cell
    measurements if larger (the measurement classifier; 68 px at the default depth and 0.5 um/px),
    and 128 px for the paper's CNN classifier (whose ResNet sees farther than any practical tile
    margin). A number: at least that much."""
    read_ahead: int = 1
    """Windows read (decoded, resampled) ahead by a background thread while the networks compute on
    the current one; 0 reads each window when it is needed. Each costs one window of memory."""

    def __post_init__(self) -> None:
        within("tiling", 16, 8192, tile=self.tile)
        within("tiling", 0, 8, read_ahead=self.read_ahead)
        if self.overlap is not None:
            within("tiling", 0, 2048, overlap=self.overlap)
