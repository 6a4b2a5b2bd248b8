"""Interval schemes: the proportion bins that clinics record, label parsing and binning.

A scheme is an ordered partition of [0, 1] into intervals. **One boundary convention is used
everywhere in maskllp**: an interval holds its lower bound and not its upper bound, except the last
interval, which also holds 1. So exactly 1 % falls in '1-25 %' (and in the clinical '1-49 %'), exactly
50 % in '50-75 %' (clinical '>=50 %'), 0 in the first interval and 1 in the last. This is the
convention of the clinical PD-L1 cut-offs ("TPS >= 1 %", "TPS >= 50 %").

Labels are parsed from the scheme's own names and reasonable variants:

* an interval written as a range: ``'1-25 %'``, ``'1-25%'``, ``'1 to 25 %'``, ``'0.01-0.25'``; a range
  is read as percent when it carries ``%`` or a bound above 1, else as fractions (and, if the fractions
  match no interval, as percent: ``'0-1'`` is ``'0-1 %'``);
* one-sided forms ``'<1 %'``, ``'>=50 %'`` (also ``'≥50%'``);
* an exact proportion: ``'0.12'`` (a fraction; a bare number must lie in [0, 1]) or ``'12%'``; it is
  binned with the convention above and its value is kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

_TOL = 1e-9


class LabelError(ValueError):
    """A label that is not an interval of the scheme nor a proportion in [0, 1]."""


@dataclass(frozen=True)
class Interval:
    """One bin [low, high) of a scheme (the last bin of a scheme is [low, 1])."""

    low: float
    high: float
    name: str
    aliases: tuple[str, ...] = ()

    @property
    def midpoint(self) -> float:
        return 0.5 * (self.low + self.high)

    @property
    def width(self) -> float:
        return self.high - self.low


@dataclass(frozen=True)
class Label:
    """A parsed label: the interval index, and the exact proportion when the label gave one."""

    interval: int
    proportion: float | None = None

    @property
    def is_exact(self) -> bool:
        return self.proportion is not None


def _fmt_percent(p: float) -> str:
    v = round(p * 100, 6)
    return f"{v:g}"


def _normalise(text: str) -> str:
    t = text.strip().lower()
    t = t.replace("\u2013", "-").replace("\u2014", "-").replace("\u2212", "-")
    t = t.replace("\u2265", ">=").replace("\u2264", "<=").replace("\uff05", "%")
    t = re.sub(r"\s+to\s+", "-", t)
    return re.sub(r"\s+", "", t)


_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_RANGE_RE = re.compile(rf"^{_NUM}(%?)-{_NUM}(%?)$")
_LESS_RE = re.compile(rf"^<{_NUM}(%?)$")
_GEQ_RE = re.compile(rf"^>=?{_NUM}(%?)$")
_EXACT_RE = re.compile(rf"^{_NUM}(%?)$")


@dataclass(frozen=True)
class IntervalScheme:
    """An ordered partition of [0, 1]: ``intervals[k] = [low_k, high_k)``, the last one closed."""

    name: str
    intervals: tuple[Interval, ...]
    _lookup: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        iv = self.intervals
        if len(iv) < 2:
            raise ValueError(f"interval scheme {self.name!r} needs at least two intervals")
        if abs(iv[0].low) > _TOL or abs(iv[-1].high - 1.0) > _TOL:
            raise ValueError(f"interval scheme {self.name!r} must run from 0 to 1")
        for a, b in zip(iv[:-1], iv[1:], strict=True):
            if abs(a.high - b.low) > _TOL:
                raise ValueError(
                    f"interval scheme {self.name!r}: {a.name!r} and {b.name!r} do not touch"
                )
        for it in iv:
            if not it.high > it.low:
                raise ValueError(f"interval scheme {self.name!r}: {it.name!r} is empty")
        lookup: dict[str, int] = {}
        for k, it in enumerate(iv):
            for alias in (it.name, *it.aliases):
                lookup[_normalise(alias)] = k
        object.__setattr__(self, "_lookup", lookup)

    # ----------------------------------------------------------------------------- properties
    def __len__(self) -> int:
        return len(self.intervals)

    @property
    def names(self) -> list[str]:
        return [it.name for it in self.intervals]

    @property
    def boundaries(self) -> np.ndarray:
        """(K + 1,) float64: 0, the inner cut points, 1."""
        return np.array([self.intervals[0].low] + [it.high for it in self.intervals])

    @property
    def midpoints(self) -> np.ndarray:
        """(K,) float64 interval midpoints (0.005 for '0-1 %', 0.375 for '25-50 %')."""
        return np.array([it.midpoint for it in self.intervals])

    @property
    def widths(self) -> np.ndarray:
        """(K,) float64 interval widths."""
        return np.array([it.width for it in self.intervals])

    # ----------------------------------------------------------------------------- binning
    def index_of(self, proportion: float | np.ndarray) -> int | np.ndarray:
        """Interval index of a proportion (scalar or array) with the scheme's one convention.

        Raises ``LabelError`` for values outside [0, 1] or NaN.
        """
        p = np.asarray(proportion, dtype=np.float64)
        if np.any(~np.isfinite(p)) or np.any(p < -_TOL) or np.any(p > 1 + _TOL):
            raise LabelError(f"proportion {proportion!r} is not in [0, 1]")
        inner = self.boundaries[1:-1]
        idx = np.searchsorted(inner, p, side="right")
        return int(idx) if idx.ndim == 0 else idx

    def contains(self, k: int, proportion: float) -> bool:
        """Whether ``proportion`` falls in interval ``k`` (same convention as :meth:`index_of`)."""
        return self.index_of(proportion) == k

    # ----------------------------------------------------------------------------- parsing
    def parse(self, text: str | float) -> Label:
        """Parse a label (interval name or variant, or exact proportion); see the module doc."""
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            return self._exact(float(text), str(text))
        raw = str(text)
        t = _normalise(raw)
        if not t:
            raise LabelError("empty label")
        if t in self._lookup:
            return Label(self._lookup[t])
        m = _RANGE_RE.match(t)
        if m:
            a, pa, b, pb = float(m.group(1)), m.group(2), float(m.group(3)), m.group(4)
            percent = bool(pa or pb) or a > 1 or b > 1
            k = self._match_range(a / 100 if percent else a, b / 100 if percent else b)
            if k is None and not percent:
                k = self._match_range(a / 100, b / 100)
            if k is None:
                raise LabelError(
                    f"label {raw!r} is not an interval of the {self.name!r} scheme "
                    f"({', '.join(self.names)})"
                )
            return Label(k)
        for pattern, below in ((_LESS_RE, True), (_GEQ_RE, False)):
            m = pattern.match(t)
            if m:
                k = self._match_one_sided(float(m.group(1)), bool(m.group(2)), below)
                if k is None:
                    raise LabelError(
                        f"label {raw!r} is not an interval of the {self.name!r} scheme "
                        f"({', '.join(self.names)})"
                    )
                return Label(k)
        m = _EXACT_RE.match(t)
        if m:
            v = float(m.group(1))
            if m.group(2):
                return self._exact(v / 100, raw)
            if v > 100:
                raise LabelError(f"proportion {raw!r} is not in [0, 1] (0-100 %)")
            if v > 1:
                raise LabelError(
                    f"label {raw!r} is ambiguous: write a fraction in [0, 1] or a percent "
                    f"('{v:g}%')"
                )
            return self._exact(v, raw)
        raise LabelError(
            f"label {raw!r} is neither an interval of the {self.name!r} scheme "
            f"({', '.join(self.names)}) nor a proportion"
        )

    def _exact(self, p: float, raw: str) -> Label:
        if not math.isfinite(p) or p < 0 or p > 1:
            raise LabelError(f"proportion {raw!r} is not in [0, 1] (0-100 %)")
        return Label(int(self.index_of(p)), float(p))

    def _match_one_sided(self, value: float, percent: bool, below: bool) -> int | None:
        """``<value`` (``below``) or ``>=value``: read as percent when marked or > 1, else as a
        fraction and, failing that, as percent (``'<1'`` is ``'<1 %'``), like ranges."""
        candidates = [value / 100] if percent or value > 1 else [value, value / 100]
        for v in candidates:
            k = self._match_range(0.0, v) if below else self._match_range(v, 1.0)
            if k is not None:
                return k
        return None

    def _match_range(self, low: float, high: float) -> int | None:
        for k, it in enumerate(self.intervals):
            if abs(it.low - low) < 1e-6 and abs(it.high - high) < 1e-6:
                return k
        return None

    def describe(self) -> str:
        return f"{self.name}: " + ", ".join(self.names)


def scheme_from_boundaries(
    name: str, boundaries: Sequence[float], names: Sequence[str] | None = None
) -> IntervalScheme:
    """A scheme from its cut points ``[0, b1, ..., 1]`` and optional interval names."""
    b = [float(x) for x in boundaries]
    if names is not None and len(names) != len(b) - 1:
        raise ValueError(f"{len(b) - 1} intervals need {len(b) - 1} names, got {len(names)}")
    if any(y <= x for x, y in zip(b[:-1], b[1:], strict=True)):
        raise ValueError(f"interval boundaries must increase: {b}")
    ivs = []
    for k, (lo, hi) in enumerate(zip(b[:-1], b[1:], strict=True)):
        auto = f"{_fmt_percent(lo)}-{_fmt_percent(hi)} %"
        nm = names[k] if names is not None else auto
        aliases = (auto,) if nm != auto else ()
        ivs.append(Interval(lo, hi, nm, aliases))
    return IntervalScheme(name, tuple(ivs))


PAPER_FIVE = scheme_from_boundaries("paper5", [0.0, 0.01, 0.25, 0.5, 0.75, 1.0])
"""The paper's five intervals: 0-1 %, 1-25 %, 25-50 %, 50-75 %, 75-100 % (the default)."""

CLINICAL_TIERS = IntervalScheme(
    "clinical3",
    (
        Interval(0.0, 0.01, "<1 %", ("0-1 %", "negative", "tps<1%")),
        Interval(0.01, 0.5, "1-49 %", ("1-49", "1-50 %", "low", "tps1-49%")),
        Interval(0.5, 1.0, ">=50 %", ("50-100 %", "high", "tps>=50%")),
    ),
)
"""The clinical PD-L1 TPS tiers: < 1 %, 1-49 %, >= 50 %."""

SCHEMES: dict[str, IntervalScheme] = {s.name: s for s in (PAPER_FIVE, CLINICAL_TIERS)}


def get_scheme(
    name: str = "paper5",
    boundaries: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
) -> IntervalScheme:
    """A named scheme (``paper5``, ``clinical3``) or, with ``boundaries``, a custom one."""
    if boundaries is not None:
        return scheme_from_boundaries(name, boundaries, names)
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(
            f"unknown interval scheme {name!r} (known: {', '.join(SCHEMES)}; or give boundaries)"
        ) from None
