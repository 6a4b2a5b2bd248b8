"""Checks every settings section makes when it is built (``__post_init__``): a wrong value is a
ValueError naming the key, which the loader turns into one line naming the file and the section."""

from __future__ import annotations

from collections.abc import Sequence


def at_least(section: str, minimum: float, **values: float) -> None:
    """Each value is >= ``minimum``."""
    for key, v in values.items():
        if not v >= minimum:
            raise ValueError(f"{section}.{key} must be >= {minimum:g}, got {v!r}")


def positive(section: str, **values: float | None) -> None:
    """Each value (None allowed: unset) is > 0."""
    for key, v in values.items():
        if v is not None and not v > 0:
            raise ValueError(f"{section}.{key} must be > 0, got {v!r}")


def within(section: str, low: float, high: float, **values: float) -> None:
    """Each value lies in [low, high]."""
    for key, v in values.items():
        if not low <= v <= high:
            raise ValueError(f"{section}.{key} must lie in [{low:g}, {high:g}], got {v!r}")


def below_one(section: str, **values: float) -> None:
    """Each value lies in [0, 1)."""
    for key, v in values.items():
        if not 0 <= v < 1:
            raise ValueError(f"{section}.{key} must lie in [0, 1), got {v!r}")


def non_empty(section: str, **values: Sequence[float]) -> None:
    for key, v in values.items():
        if not len(v):
            raise ValueError(f"{section}.{key} must not be empty")
