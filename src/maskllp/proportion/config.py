"""Settings of stage 2, the proportion network and its training (section ``[proportion]``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ProportionConfig:
    method: str = "ours"
    """Name of a Table 1 method in the registry (``maskllp.methods``)."""
    input_size: int = 256
    """Cores are resized to this side before the network (the paper: 2048)."""
    lr: float = 1e-4
    batch_size: int = 16
    max_epochs: int = 100
    patience: int = 30
    pretrained_weights: Path | None = None
    """Local ImageNet ResNet-18 weights file (torchvision state dict); random init when unset."""
