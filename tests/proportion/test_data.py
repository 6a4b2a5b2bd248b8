"""Fitting cores into the input square, and augmentation applied identically to image and mask."""

from __future__ import annotations

import numpy as np
import torch

from maskllp.proportion.data import augment_pair, fit_core, square_fit, to_tensors


def test_square_fit_keeps_the_aspect_ratio_and_centres() -> None:
    fit = square_fit((100, 200), 64)
    assert (fit.height, fit.width, fit.top, fit.left) == (32, 64, 16, 0)
    fit = square_fit((300, 150), 64)
    assert (fit.height, fit.width, fit.top, fit.left) == (64, 32, 0, 16)


def test_fit_core_pads_white_and_the_mask_false() -> None:
    rgb = np.zeros((100, 200, 3), np.uint8)
    mask = np.ones((50, 100), bool)  # the same extent at half resolution
    image, m = fit_core(rgb, mask, 64)
    assert image.shape == (64, 64, 3) and m.shape == (64, 64)
    assert (image[:16] == 255).all() and (image[48:] == 255).all() and (image[16:48] == 0).all()
    assert not m[:16].any() and not m[48:].any() and m[16:48].all()


def test_augmentation_moves_image_and_mask_together() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    mask = rgb[..., 0] > 128
    image, m = to_tensors(rgb, mask)
    for turns in range(4):
        for fh in (False, True):
            for fv in (False, True):
                a, b = augment_pair(image, m, turns, fh, fv)
                assert torch.equal((a[0] * 255).round() > 128, b[0] > 0.5)
    a, _ = augment_pair(image, m, 1, False, False)
    assert torch.equal(a, torch.rot90(image, 1, (-2, -1)))
