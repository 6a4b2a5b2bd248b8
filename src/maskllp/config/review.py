"""When ``maskllp predict`` flags a core for a pathologist's look (section ``[review]``)."""

from __future__ import annotations

from dataclasses import dataclass

from maskllp.config.checks import at_least, positive, within


@dataclass
class ReviewConfig:
    min_tumour_cells: int = 100
    """Fewer tumour cells than this: flagged (the PD-L1 22C3 guideline asks for at least 100 viable
    tumour cells for a TPS)."""
    stained_dab_od: float = 0.15
    """A cell counts as stained when the brightest ring of DAB around it (its 90th percentile, log10
    OD) exceeds this."""
    min_stained_fraction: float = 0.002
    """Fewer stained cells than this share of all cells: flagged "no DAB signal" (likely not an
    IHC stain, or a failed one)."""

    stain_margin_deg: float = 3.0
    """A core's hematoxylin or DAB colour is outside the training range when its angle from the
    training cores' mean exceeds theirs by more than this (degrees; a stain vector's per-core
    estimate varies by a few degrees on one slide)."""
    stain_od_margin: float = 0.25
    """...and its counterstain strength when it lies beyond the training cores' span widened by
    this share on each side."""

    def __post_init__(self) -> None:
        at_least("review", 0, min_tumour_cells=self.min_tumour_cells, stain_margin_deg=self.stain_margin_deg,
                 stain_od_margin=self.stain_od_margin)
        positive("review", stained_dab_od=self.stained_dab_od)
        within("review", 0, 1, min_stained_fraction=self.min_stained_fraction)
