import numpy as np
import pytest

from maskllp.detection.cells import DetectedCells, count_proportion
from maskllp.detection.mask import disk_mask, mask_shape, tumour_mask
from maskllp.evaluation.detection_metrics import (
    classification_scores,
    detection_scores,
    mask_dice,
    match_points,
)


def test_mask_radius_is_strict_and_exact():
    m = disk_mask(np.array([[10.0, 10.0]]), (21, 21), radius=3.0)
    rr, cc = np.mgrid[:21, :21]
    expected = (rr - 10) ** 2 + (cc - 10) ** 2 < 9
    np.testing.assert_array_equal(m, expected)
    assert not m[10, 13] and m[10, 12]


def test_mask_borders_and_downsample():
    # a disk cut by the image border; a cell beyond the border still lights pixels inside
    m = disk_mask(np.array([[0.0, 0.0], [-2.0, 8.0]]), (6, 10), radius=3.0)
    assert m[0, 0] and m[2, 0] and not m[3, 0]
    assert m.shape == (6, 10)
    assert m[0, 8] and not m[1, 8] and not m[1, 5]
    # downsample 4: mask pixel (i, j) has its centre at level-0 (4 i + 1.5, 4 j + 1.5)
    assert mask_shape((10, 9), 4) == (3, 3)
    d = disk_mask(np.array([[5.5, 5.5]]), (10, 9), radius=4.5, downsample=4)
    assert d.shape == (3, 3)  # centres at distance 4 are in, diagonal ones (5.66) are out
    assert d.tolist() == [[False, True, False], [True, True, True], [False, True, False]]
    # a radius smaller than a mask pixel still marks the pixel that holds the cell
    tiny = disk_mask(np.array([[9.0, 1.0]]), (10, 9), radius=0.5, downsample=4)
    assert tiny.sum() == 1 and tiny[2, 0]


def test_tumour_mask_uses_only_tumour_cells():
    yx = np.array([[5.0, 5.0], [20.0, 20.0]])
    m = tumour_mask(yx, np.array([True, False]), (30, 30), alpha_px=2.5)
    assert m[5, 5] and not m[20, 20] and m.sum() == 21


def test_match_points_is_one_to_one_and_maximal():
    truth = np.array([[0.0, 0.0], [0.0, 3.0], [50.0, 50.0]])
    pred = np.array([[0.0, 1.6], [0.0, 4.5], [80.0, 80.0]])
    # greedy nearest would pair pred 0 with truth 1 (1.4) and leave truth 0; Hungarian pairs both
    p, t = match_points(pred, truth, radius=2.0)
    assert sorted(zip(p.tolist(), t.tolist(), strict=True)) == [(0, 0), (1, 1)]
    s = detection_scores(pred, truth, 2.0)
    assert (s.tp, s.fp, s.fn) == (2, 1, 1)
    assert s.precision == pytest.approx(2 / 3) and s.f1 == pytest.approx(2 / 3)
    empty = detection_scores(np.zeros((0, 2)), truth, 2.0)
    assert empty.precision is None and empty.recall == 0.0 and empty.f1 is None


def test_match_points_many_random():
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 200, (300, 2))
    pred = truth + rng.normal(0, 0.5, truth.shape)
    p, t = match_points(pred[::-1], truth, 3.0)
    assert len(p) == 300 and np.all(p == 299 - t)


def test_classification_and_dice():
    c = classification_scores(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    assert c.accuracy == 0.75 and c.f1 == pytest.approx(2 / 3)
    assert classification_scores(np.array([], int), np.array([], int)).accuracy is None
    a = np.zeros((4, 4), bool)
    assert mask_dice(a, a) is None
    b = a.copy()
    b[0, :2] = True
    a[0, 0] = True
    assert mask_dice(a, b) == pytest.approx(2 / 3)


def test_count_proportion_three_classes():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8]], np.float32)
    cells = DetectedCells(np.zeros((4, 2)), np.ones(4, np.float32), 1 - probs[:, 2], probs, (10, 10), 0.5)
    assert count_proportion(cells) == (2, 1, pytest.approx(2 / 3))
    none = cells.subset(np.array([3]))
    assert count_proportion(none) == (0, 0, None)
    binary = DetectedCells(np.zeros((1, 2)), np.ones(1, np.float32), np.ones(1, np.float32), None, (4, 4), 1)
    with pytest.raises(ValueError):
        count_proportion(binary)


def test_positivity_scores_count_matched_stained_tumour_cells_only() -> None:
    from maskllp.classes import CellClass
    from maskllp.evaluation.detection_metrics import positivity_scores

    truth = np.array([[0.0, 0.0], [0.0, 10.0], [0.0, 20.0], [0.0, 30.0], [0.0, 40.0]])
    classes = np.array([CellClass.POSITIVE_TUMOUR, CellClass.POSITIVE_TUMOUR, CellClass.NEGATIVE_TUMOUR,
                        CellClass.NEGATIVE_TUMOUR, CellClass.NON_TUMOUR], np.int8)
    pred = np.array([[0.5, 0.0], [0.0, 10.5], [0.0, 20.5], [0.0, 30.0], [0.0, 40.0], [9.0, 9.0]])
    called = np.array([True, False, True, False, True, True])  # the last two match nothing stained
    s = positivity_scores(pred, called, truth, classes, radius=2.0)
    assert (s.tp, s.fn, s.fp, s.tn) == (1, 1, 1, 1) and s.n == 4
    assert s.precision == 0.5 and s.recall == 0.5 and s.macro_f1 == 0.5
    assert (s + s).n == 8 and (s + s).macro_f1 == 0.5


def test_errors_are_counted_per_true_subtype() -> None:
    from maskllp.classes import CellClass
    from maskllp.detection.cells import DetectedCells
    from maskllp.evaluation.detection_metrics import EvaluationSettings, evaluate_cells, summarise

    truth = np.array([[10.0, 10.0], [10.0, 30.0], [10.0, 50.0], [10.0, 70.0]])
    classes = np.array([CellClass.POSITIVE_TUMOUR, CellClass.NEGATIVE_TUMOUR, CellClass.NON_TUMOUR,
                        CellClass.NON_TUMOUR], np.int8)
    subtypes = ["tumour", "tumour", "lymphocyte", "macrophage"]
    # detected: both tumour cells (one called non-tumour), the lymphocyte called tumour, the macrophage not
    cells = DetectedCells(truth.copy(), np.ones(4, np.float32), np.array([0.9, 0.1, 0.8, 0.2], np.float32),
                          None, (20, 80), 0.5)
    core = evaluate_cells(cells, truth, classes, EvaluationSettings(2.0, 3.0), "c", subtypes)
    errors = core.as_dict()["subtypes"]
    assert errors == {"lymphocyte": {"n": 1, "called tumour": 1.0},
                      "macrophage": {"n": 1, "called tumour": 0.0},
                      "tumour": {"n": 2, "called non-tumour": 0.5}}
    assert summarise([core, core])["subtypes"]["tumour"] == {"n": 4, "called non-tumour": 0.5}


def test_the_mask_outline_covers_what_the_raster_mask_covers() -> None:
    from maskllp.detection.mask import disk_outline, tumour_mask

    rng = np.random.default_rng(0)
    yx = rng.uniform(-5, 105, (40, 2))  # some near and past the edges
    outline = disk_outline(yx, (100, 120), 6.0)
    raster = tumour_mask(yx, np.ones(len(yx), bool), (100, 120), 6.0, 1.0)
    assert outline.is_valid and abs(outline.area - raster.sum()) < 0.03 * raster.sum()
    minx, miny, maxx, maxy = outline.bounds
    assert minx >= 0 and miny >= 0 and maxx <= 120 and maxy <= 100  # inside the image
    assert disk_outline(np.zeros((0, 2)), (10, 10), 6.0).is_empty
