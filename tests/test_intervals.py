"""Interval schemes: one boundary convention, every label form, edge cases."""

from __future__ import annotations

import re

import numpy as np
import pytest

from maskllp.intervals import (
    CLINICAL_TIERS,
    PAPER_FIVE,
    Interval,
    IntervalScheme,
    LabelError,
    get_scheme,
    scheme_from_boundaries,
)


def test_paper_scheme_names_midpoints_widths():
    assert PAPER_FIVE.names == ["0-1 %", "1-25 %", "25-50 %", "50-75 %", "75-100 %"]
    np.testing.assert_allclose(PAPER_FIVE.midpoints, [0.005, 0.13, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(PAPER_FIVE.widths, [0.01, 0.24, 0.25, 0.25, 0.25])
    np.testing.assert_allclose(PAPER_FIVE.boundaries, [0, 0.01, 0.25, 0.5, 0.75, 1])
    assert len(PAPER_FIVE) == 5


@pytest.mark.parametrize("p, k", [
    (0.0, 0), (0.009999, 0), (0.01, 1), (0.2499, 1), (0.25, 2), (0.5, 3), (0.75, 4), (0.99, 4), (1.0, 4),
])
def test_boundaries_go_up(p, k):
    """[low, high): an exact boundary belongs to the interval above it; 1 to the last interval."""
    assert PAPER_FIVE.index_of(p) == k
    assert PAPER_FIVE.contains(k, p)


def test_clinical_cut_offs():
    assert [CLINICAL_TIERS.index_of(p) for p in (0.0, 0.0099, 0.01, 0.4999, 0.5, 1.0)] == [0, 0, 1, 1, 2, 2]


def test_index_of_arrays():
    got = PAPER_FIVE.index_of(np.array([0.0, 0.01, 0.3, 1.0]))
    assert got.tolist() == [0, 1, 2, 4]


@pytest.mark.parametrize("p", [-0.01, 1.01, float("nan"), float("inf")])
def test_out_of_range_proportions(p):
    with pytest.raises(LabelError):
        PAPER_FIVE.index_of(p)
    with pytest.raises(LabelError):
        PAPER_FIVE.index_of(np.array([0.5, p]))


@pytest.mark.parametrize("text, k", [
    ("0-1 %", 0), ("1-25 %", 1), ("1-25%", 1), (" 25 - 50 % ", 2), ("50 to 75 %", 3), ("75–100 %", 4),
    ("0.01-0.25", 1), ("0.75-1", 4), ("0-1", 0), ("1-25", 1), ("<1 %", 0), ("<1%", 0), ("<1", 0),
    ("<0.01", 0), (">=75 %", 4), ("≥75%", 4), (">=0.75", 4), (">75", 4),
])
def test_interval_label_forms(text, k):
    label = PAPER_FIVE.parse(text)
    assert label.interval == k and label.proportion is None and not label.is_exact


@pytest.mark.parametrize("text, p, k", [
    ("0", 0.0, 0), ("0.0", 0.0, 0), ("0.005", 0.005, 0), ("0.01", 0.01, 1), ("1%", 0.01, 1),
    ("0.25", 0.25, 2), ("25 %", 0.25, 2), ("50%", 0.5, 3), ("1", 1.0, 4), ("100%", 1.0, 4), (".3", 0.3, 2),
    (0.75, 0.75, 4), (0, 0.0, 0),
])
def test_exact_proportions_are_kept_and_binned(text, p, k):
    label = PAPER_FIVE.parse(text)
    assert label.is_exact and label.proportion == pytest.approx(p) and label.interval == k


@pytest.mark.parametrize("text, words", [
    ("", "empty label"), ("   ", "empty label"), ("1-20 %", "not an interval"), ("150", "not in [0, 1]"),
    ("101%", "not in [0, 1]"), ("1.5", "ambiguous"), ("-0.1", "neither"), ("abc", "neither"),
    ("<2 %", "not an interval"), (">=60%", "not an interval"), ("1-25-50", "neither"),
])
def test_bad_labels(text, words):
    with pytest.raises(LabelError, match=re.escape(words)):
        PAPER_FIVE.parse(text)


def test_clinical_labels_and_aliases():
    for text, k in [("<1 %", 0), ("negative", 0), ("1-49 %", 1), ("1-49", 1), ("1-50 %", 1), ("low", 1),
                    (">=50 %", 2), ("≥50%", 2), ("High", 2), ("TPS >= 50%", 2), ("0.3", 1)]:
        assert CLINICAL_TIERS.parse(text).interval == k, text
    with pytest.raises(LabelError, match="clinical3"):
        CLINICAL_TIERS.parse("1-25 %")


def test_custom_scheme():
    scheme = get_scheme("mine", [0, 0.01, 0.1, 0.5, 1])
    assert scheme.names == ["0-1 %", "1-10 %", "10-50 %", "50-100 %"]
    assert scheme.parse("10%").interval == 2 and scheme.parse("1-10 %").interval == 1
    named = scheme_from_boundaries("named", [0, 0.5, 1], ["low", "high"])
    assert named.parse("low").interval == 0 and named.parse("0-50 %").interval == 0
    assert named.parse("HIGH").interval == 1


@pytest.mark.parametrize("bounds", [[0, 0.5], [0.1, 0.5, 1], [0, 0.5, 0.4, 1], [0, 0.5, 0.9]])
def test_bad_custom_schemes(bounds):
    with pytest.raises(ValueError):
        get_scheme("bad", bounds)


def test_scheme_checks_and_unknown_name():
    with pytest.raises(ValueError, match="do not touch"):
        IntervalScheme("gap", (Interval(0, 0.4, "a"), Interval(0.5, 1, "b")))
    with pytest.raises(ValueError, match="unknown interval scheme"):
        get_scheme("paper6")
    with pytest.raises(ValueError, match="names"):
        scheme_from_boundaries("x", [0, 0.5, 1], ["one"])
