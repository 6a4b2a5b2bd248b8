"""Random fields are functions of absolute pixel position (the basis of tile-independence)."""

from __future__ import annotations

import numpy as np

from maskllp.synth.noise import (
    fractal_noise_grid,
    fractal_noise_points,
    hash_uniform,
    value_noise_grid,
    white_noise_grid,
)


def test_hash_is_a_pure_function_of_seed_and_position():
    iy, ix = np.meshgrid(np.arange(-5, 5), np.arange(-3, 7), indexing="ij")
    a = hash_uniform(7, iy, ix)
    assert np.array_equal(a, hash_uniform(7, iy, ix))
    assert not np.array_equal(a, hash_uniform(8, iy, ix))
    assert a.min() >= 0 and a.max() < 1
    u = hash_uniform(1, *np.meshgrid(np.arange(300), np.arange(300), indexing="ij"))
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.std() - np.sqrt(1 / 12)) < 0.01


def test_windows_of_a_field_agree_with_the_whole():
    whole = value_noise_grid(3, 0, 0, 64, 80, 6.5)
    part = value_noise_grid(3, 17, 23, 20, 30, 6.5)
    assert np.array_equal(whole[17:37, 23:53], part)
    fw = fractal_noise_grid(3, -10, -10, 50, 50, 12.0)
    fp = fractal_noise_grid(3, 5, 0, 20, 30, 12.0)
    assert np.array_equal(fw[15:35, 10:40], fp)
    ww = white_noise_grid(9, 0, 0, 40, 40)
    assert np.array_equal(ww[10:20, 5:25], white_noise_grid(9, 10, 5, 10, 20))
    assert abs(ww.mean()) < 0.1 and abs(ww.std() - 1) < 0.1


def test_point_sampling_matches_the_grid():
    grid = fractal_noise_grid(5, 0, 0, 30, 30, 8.0)
    yx = np.array([[3.0, 4.0], [29.0, 0.0], [12.0, 17.0]])
    assert np.allclose(fractal_noise_points(5, yx, 8.0), grid[[3, 29, 12], [4, 0, 17]], atol=1e-6)


def test_value_noise_is_smooth_at_its_scale():
    field = value_noise_grid(2, 0, 0, 200, 200, 20.0)
    assert np.abs(np.diff(field, axis=0)).max() < 0.15
    assert field.std() > 0.1
