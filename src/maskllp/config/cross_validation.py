"""Cross-validation settings (section ``[cv]``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CrossValidationConfig:
    folds: int = 4
    """Number of folds (stratified by interval, grouped by patient)."""
    seed: int = 0
    """Seed of the fold assignment (every method sees the same folds)."""
    cutoffs: list[float] = field(default_factory=lambda: [0.01, 0.5])
    """Clinical cut-offs at which agreement with exact truth is reported (fractions)."""
    save_models: bool = False
    """Also write each fold's fitted model folder under ``<run>/models/<method>-fold<k>``."""
    train_cores: int | None = None
    """Train each fold on at most this many of its training cores (a seeded random subset, the
    smaller subsets inside the larger ones: a learning curve); None: all of them."""

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"cv.folds must be at least 2, got {self.folds}")
        if self.train_cores is not None and self.train_cores < 2:
            raise ValueError(f"cv.train_cores must be at least 2 (or unset), got {self.train_cores}")
        if any(not 0 < c < 1 for c in self.cutoffs):
            raise ValueError(f"cv.cutoffs must lie in (0, 1), got {self.cutoffs}")
