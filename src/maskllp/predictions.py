"""What every method of Table 1 predicts for a core, in one type shared by all of them.

A :class:`ProportionPrediction` is the proportion estimate (``None``: undefined, e.g. no tumour cell
in the mask), its interval index, and the method's evidence s_p / s_n when it has any (the masked
sums of the map methods, the positive / negative cell counts of Det). Interval-only methods (Class,
O-Reg) give the midpoint of their interval as the proportion.
"""

from __future__ import annotations

from dataclasses import dataclass

UNDEFINED = -1
"""Predicted interval index of a core whose proportion is undefined."""


@dataclass(frozen=True)
class ProportionPrediction:
    """One core's prediction (``None``: undefined or not produced by the method)."""

    proportion: float | None
    interval: int | None
    s_p: float | None = None
    s_n: float | None = None
