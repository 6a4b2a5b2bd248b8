"""Settings of the synthetic cohort generator (section ``[synth]``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class SynthConfig:
    """How synthetic cores look and how a cohort is drawn."""

    size: int = 512
    """Core image side in pixels (256 to 10 000)."""
    mpp: float = 0.5
    """Pixel size in microns per pixel."""
    marker: Literal["membrane", "nucleus"] = "membrane"
    """Where positive tumour cells show DAB: membrane (PD-L1) or nucleus (Ki-67)."""
    seed: int = 0
