"""Choosing the cells to label next (``maskllp.detection.suggest``), on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from maskllp.detection.suggest import cells_to_label, tumour_margin


def test_margin_is_the_distance_from_an_even_call():
    np.testing.assert_allclose(tumour_margin(np.array([0.5, 0.9, 0.1, 0.0])), [0.0, 0.4, 0.4, 0.5])


def test_uncertain_picks_the_least_certain_unlabelled_cells_first():
    scores = [np.array([0.9, 0.56, 0.5, np.nan]), np.array([0.45, 0.49, 0.02])]
    feats = [np.zeros((4, 1)), np.zeros((3, 1))]
    labelled = [np.array([False, False, True, False]), np.array([False, False, False])]
    got = cells_to_label(scores, feats, labelled, 3, "uncertain")
    # (0, 2) is the surest-unsure but labelled; (0, 3) has no call
    assert got == [(1, 1), (1, 0), (0, 1)]


def test_diverse_spreads_the_picks_over_kinds_of_cell():
    # kind A (feature 0) holds the three least certain cells; kind B (feature 10) one a little surer
    scores = [np.array([0.50, 0.51, 0.49, 0.60, 0.99])]
    feats = [np.array([[0.0], [0.1], [0.2], [10.0], [10.1]])]
    labelled = [np.zeros(5, bool)]
    assert cells_to_label(scores, feats, labelled, 2, "uncertain") == [(0, 0), (0, 2)]
    got = cells_to_label(scores, feats, labelled, 2, "diverse", pool_factor=2)
    assert got == [(0, 0), (0, 3)]  # one of each kind, the least certain of each, least certain first


def test_random_draws_distinct_unlabelled_cells_and_follows_the_seed():
    scores = [np.linspace(0, 1, 50)]
    labelled = [np.arange(50) % 2 == 0]
    got = cells_to_label(scores, [np.zeros((50, 0))], labelled, 10, "random", seed=3)
    assert len(set(got)) == 10 and all(c % 2 == 1 for _, c in got)
    assert got == cells_to_label(scores, [np.zeros((50, 0))], labelled, 10, "random", seed=3)
    assert got != cells_to_label(scores, [np.zeros((50, 0))], labelled, 10, "random", seed=4)


@pytest.mark.parametrize("strategy", ["diverse", "uncertain", "random"])
def test_asking_for_more_than_there_is_gives_every_unlabelled_cell(strategy):
    scores = [np.array([0.3, 0.7]), np.array([], np.float32), np.array([0.5])]
    feats = [np.eye(2), np.zeros((0, 2)), np.ones((1, 2))]
    labelled = [np.array([False, True]), np.zeros(0, bool), np.array([False])]
    assert sorted(cells_to_label(scores, feats, labelled, 9, strategy)) == [(0, 0), (2, 0)]
    assert cells_to_label(scores, feats, labelled, 0, strategy) == []
    assert cells_to_label([], [], [], 5, strategy) == []


def test_bad_arguments_are_refused():
    one = [np.array([0.5])]
    with pytest.raises(ValueError, match="strategy"):
        cells_to_label(one, [np.zeros((1, 1))], [np.zeros(1, bool)], 1, "best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same cores"):
        cells_to_label(one, [], [np.zeros(1, bool)], 1)
    with pytest.raises(ValueError, match="labelled flags"):
        cells_to_label(one, [np.zeros((1, 1))], [np.zeros(2, bool)], 1)
    with pytest.raises(ValueError, match="n >= 0"):
        cells_to_label(one, [np.zeros((1, 1))], [np.zeros(1, bool)], -1)
