import numpy as np

from maskllp.detection.augment import Dihedral, stain_jitter


def test_dihedral_moves_points_with_pixels():
    rng = np.random.default_rng(0)
    img = np.zeros((7, 11), np.uint8)
    pts = np.array([[1.0, 2.0], [5.0, 9.0], [0.0, 10.0]])
    for k, (y, x) in enumerate(pts.astype(int)):
        img[y, x] = k + 1
    for turns in range(4):
        for transpose in (False, True):
            d = Dihedral(turns, transpose)
            out = d.apply(img)
            moved = d.apply_points(pts, img.shape)
            for k, (y, x) in enumerate(np.rint(moved).astype(int)):
                assert out[y, x] == k + 1
    assert isinstance(Dihedral.random(rng), Dihedral)


def test_stain_jitter_keeps_shape_and_changes_colour_a_little():
    rng = np.random.default_rng(0)
    img = rng.integers(60, 230, (16, 16, 3), dtype=np.uint8)
    assert stain_jitter(img, rng, 0.0) is img
    out = stain_jitter(img, rng, 0.05)
    assert out.shape == img.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - img.astype(int))
    assert 0 < diff.mean() < 30
