"""The Fig. 5 figure: its geometry by hand, and the figure written with and without a close-up."""

from __future__ import annotations

import numpy as np
from PIL import Image

from maskllp.classes import CellClass
from maskllp.proportion.inputs import InputFit
from maskllp.report.overlay import (
    CloseUp,
    cell_calls_figure,
    densest_window,
    positive_share,
    proportion_figure,
)


def test_the_densest_window_holds_the_most_points() -> None:
    yx = np.array([[5.0, 5.0], [70.0, 90.0], [75.0, 95.0], [78.0, 99.0]])
    assert densest_window(yx, (100, 120), 40) == (40, 60)  # all 3 points: the first such window, step 10
    assert densest_window(np.zeros((0, 2)), (100, 120), 40) == (0, 0)
    assert densest_window(yx, (30, 30), 40) == (0, 0)  # an image smaller than the window


def test_level0_positions_land_on_the_network_canvas() -> None:
    """A 100 x 200 px core resampled to 50 x 100 at (3, 0) on its canvas: pixel centres map to
    pixel centres (level-0 pixel 1 covers [1, 2) -> [0.5, 1), centre 0.75 -> canvas 0.25)."""
    fit = InputFit(64, 128, 3, 0, 50, 100)
    got = fit.from_level0(np.array([[0.0, 0.0], [1.0, 1.0], [99.0, 199.0]]), (100, 200))
    np.testing.assert_allclose(got, [[2.75, -0.25], [3.25, 0.25], [52.25, 99.25]])


def test_positive_share_by_hand() -> None:
    share = positive_share(np.array([[3.0, 0.0]]), np.array([[1.0, 0.0]]))
    assert share.tolist() == [[0.75, 0.5]]  # 0 / 0 is shown as even, not as negative


def test_the_figure_is_written_with_and_without_a_close_up(tmp_path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[10:40, 10:40] = True
    f_p, f_n = rng.random((8, 8)), rng.random((8, 8))
    plain = proportion_figure(image, mask, f_p, f_n, "core", tmp_path / "plain.png")
    cells = np.array([[10.0, 20.0], [50.0, 60.0]])
    classes = np.array([CellClass.POSITIVE_TUMOUR, CellClass.NON_TUMOUR], np.int8)
    window = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
    close = CloseUp(window, cells, classes, (8.0, 8.0, 40.0, 40.0), 0.5)
    both = proportion_figure(image, mask, f_p, f_n, "core", tmp_path / "close.png", close)
    with Image.open(plain) as a, Image.open(both) as b:
        assert b.size[1] > 1.6 * a.size[1] and a.size[0] == b.size[0]  # a second row


def test_the_cell_method_figure_shows_the_core_the_calls_and_each_cell_s_probability(tmp_path) -> None:
    """Three panels side by side; the title counts the uncertain cells (p in 0.3-0.7) among the cells
    with a p(positive), so a non-tumour cell (NaN) is not counted."""
    import matplotlib

    matplotlib.use("Agg")
    from unittest import mock

    rng = np.random.default_rng(1)
    preview = rng.integers(0, 255, (80, 120, 3), dtype=np.uint8)
    window = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
    cells = np.array([[10.0, 20.0], [50.0, 60.0], [70.0, 30.0]])
    classes = np.array([CellClass.POSITIVE_TUMOUR, CellClass.NEGATIVE_TUMOUR, CellClass.NON_TUMOUR], np.int8)
    close = CloseUp(window, cells, classes, (5.0, 5.0, 40.0, 40.0), 0.5, np.array([0.9, 0.45, np.nan]))
    import matplotlib.axes

    titles: list[str] = []
    real = matplotlib.axes.Axes.set_title

    def keep(self, label, *args, **kwargs):
        titles.append(label)
        return real(self, label, *args, **kwargs)

    with mock.patch.object(matplotlib.axes.Axes, "set_title", keep):
        path = cell_calls_figure(preview, close, "core c: TPS 50 %", tmp_path / "cells.png")
    assert "1 of 2 cells in 0.3-0.7" in titles[-1]
    with Image.open(path) as im:
        assert im.size[0] > 2.4 * im.size[1]  # one row of three panels
