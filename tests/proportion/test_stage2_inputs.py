"""Cores read into the input square, and augmentation applied identically to image and mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from maskllp.proportion.inputs import augment_pair, input_mask, read_input_image, square_fit, to_tensors


def test_square_fit_keeps_the_aspect_ratio_and_centres() -> None:
    fit = square_fit((100, 200), 64)
    assert (fit.height, fit.width, fit.top, fit.left) == (32, 64, 16, 0)
    fit = square_fit((300, 150), 64)
    assert (fit.height, fit.width, fit.top, fit.left) == (64, 32, 0, 16)


def test_a_core_is_read_into_the_square_on_white_and_its_mask_on_false(tmp_path) -> None:
    Image.fromarray(np.zeros((100, 200, 3), np.uint8)).save(tmp_path / "core.png")
    image, fit = read_input_image(tmp_path / "core.png", 0.5, 64)
    m = input_mask(np.ones(fit.content_shape, bool), fit)
    assert image.shape == (64, 64, 3) and m.shape == (64, 64) and fit.content_shape == (32, 64)
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


def test_a_mask_of_another_shape_is_refused(tmp_path) -> None:
    fit = square_fit((100, 200), 64)
    with pytest.raises(ValueError, match="does not match"):
        input_mask(np.ones((50, 100), bool), fit)
