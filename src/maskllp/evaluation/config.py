"""Cross-validation settings (section ``[cv]``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CrossValidationConfig:
    folds: int = 4
    seed: int = 0
