import numpy as np
import pytest

from maskllp.detection.heatmap import centre_heatmap
from maskllp.detection.peaks import find_peaks, local_maxima


def test_heatmap_peaks_at_the_points():
    pts = np.array([[10.0, 12.0], [30.0, 40.0], [31.0, 5.0]])
    hm = centre_heatmap(pts, (48, 50), sigma=2.0)
    assert hm.dtype == np.float32 and hm.shape == (48, 50)
    for y, x in pts.astype(int):
        assert hm[y, x] == pytest.approx(1.0)
        assert hm[y, x] == hm[y - 3 : y + 4, x - 3 : x + 4].max()
    assert hm[0, 49] == 0.0  # far from every point
    assert hm[10, 14] == pytest.approx(np.exp(-4 / 8), rel=1e-6)


def test_heatmap_subpixel_point_peaks_at_nearest_pixel_and_outside_points_count():
    hm = centre_heatmap(np.array([[5.3, 7.6]]), (12, 12), sigma=1.5)
    assert np.unravel_index(np.argmax(hm), hm.shape) == (5, 8)
    edge = centre_heatmap(np.array([[-1.0, 6.0]]), (12, 12), sigma=1.5)
    assert edge[0, 6] == pytest.approx(np.exp(-1 / (2 * 1.5**2)), rel=1e-6)
    assert centre_heatmap(np.zeros((0, 2)), (4, 4), 1.0).sum() == 0


def test_peaks_of_a_hand_made_heatmap():
    hm = np.zeros((20, 20), np.float32)
    hm[4, 5] = 0.9
    hm[4, 7] = 0.8  # 2 px from a higher peak: suppressed with min_distance 3, kept with 1
    hm[15, 15] = 0.6
    hm[10, 2] = 0.2  # below threshold
    yx, score = find_peaks(hm, threshold=0.3, min_distance=3, subpixel=False)
    assert yx.tolist() == [[4.0, 5.0], [15.0, 15.0]]
    np.testing.assert_allclose(score, [0.9, 0.6])
    yx, _ = find_peaks(hm, threshold=0.3, min_distance=1, subpixel=False)
    assert yx.tolist() == [[4.0, 5.0], [4.0, 7.0], [15.0, 15.0]]


def test_plateau_gives_one_peak_and_subpixel_refines():
    hm = np.zeros((10, 10), np.float32)
    hm[3, 3:5] = 1.0  # a two-pixel plateau
    assert (local_maxima(hm, 2) & (hm > 0)).sum() == 1
    hm = centre_heatmap(np.array([[4.3, 5.8]]), (10, 10), sigma=2.0)
    yx, _ = find_peaks(hm, 0.5, 2)
    np.testing.assert_allclose(yx[0], [4.3, 5.8], atol=0.1)


@pytest.mark.parametrize("seed", range(4))
def test_local_maxima_equal_a_maximum_filter_with_the_disk_as_footprint(seed):
    """The candidate lookup gives exactly the rule written as two maximum filters (the disk, and
    its part before the centre in raster order), ties and plateaus included."""
    from scipy import ndimage

    from maskllp.detection.peaks import _disk, peak_pixels

    rng = np.random.default_rng(seed)
    for trial in range(60):
        h, w = rng.integers(1, 30, 2)
        md = float(rng.choice([0.5, 1.0, 1.5, 2.7, 4.0, 5.5, 9.0]))
        hm = (rng.integers(0, 3, (h, w)) if trial % 2 else rng.random((h, w))).astype(np.float32)
        disk = _disk(md)
        r = disk.shape[0] // 2
        before = disk.copy()
        before[r, r:] = False
        before[r + 1 :] = False
        top = ndimage.maximum_filter(hm, footprint=disk, mode="constant", cval=-np.inf)
        top_before = ndimage.maximum_filter(hm, footprint=before, mode="constant", cval=-np.inf)
        expected = (hm >= top) & (hm > top_before)
        np.testing.assert_array_equal(local_maxima(hm, md), expected)
        rows, cols = peak_pixels(hm, 1.0, md)
        np.testing.assert_array_equal(np.stack([rows, cols]), np.stack(np.nonzero(expected & (hm >= 1.0))))
