"""Settings of stage 1: detector, tumour classifier, tumour mask, tiling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class DetectorConfig:
    """Heatmap U-Net cell detector (section ``[detector]``)."""

    sigma_um: float = 2.0
    """Gaussian sigma of the centre heatmap, in microns (converted with the pixel size)."""
    lr: float = 1e-3
    batch_size: int = 8
    max_epochs: int = 100


@dataclass
class ClassifierConfig:
    """Tumour / non-tumour cell classifier (section ``[classifier]``)."""

    lr: float = 2e-4
    batch_size: int = 16
    max_epochs: int = 100
    pretrained_weights: Path | None = None
    """Local ImageNet ResNet-50 weights file (torchvision state dict); random init when unset."""


@dataclass
class MaskConfig:
    """Tumour mask M (section ``[mask]``)."""

    alpha_um: float = 4.0
    """Disk radius around each tumour cell, in microns."""
    tumour_threshold: float = 0.5


@dataclass
class TilingConfig:
    """How large images are cut for stage 1 (section ``[tiling]``)."""

    tile: int = 512
    overlap: int = 64
