"""Cores become network inputs: one pixel size whole and in their own shape (or the paper's square),
batches padded, augmentation applied identically to image, mask and extent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from maskllp.errors import InputError
from maskllp.proportion.inputs import (
    InputSpec,
    Stage2Dataset,
    Stage2Item,
    augment_tensors,
    click_counts,
    collate_inputs,
    core_tensors,
    input_mask,
    read_input_image,
    square_fit,
)


def test_square_fit_keeps_the_aspect_ratio_and_centres() -> None:
    fit = square_fit((100, 200), 64)
    assert (fit.content_height, fit.content_width, fit.top, fit.left) == (32, 64, 16, 0)
    fit = square_fit((300, 150), 64)
    assert (fit.content_height, fit.content_width, fit.top, fit.left) == (64, 32, 0, 16)


def test_pixel_size_fit_keeps_microns_per_pixel_and_pads_to_the_stride() -> None:
    spec = InputSpec("pixel-size", mpp=1.0)
    fit = spec.fit((100, 230), image_mpp=0.5)  # 50 x 115 um of tissue -> 50 x 115 px at 1 um/px
    assert fit.content_shape == (50, 115) and fit.shape == (64, 128) and (fit.top, fit.left) == (0, 0)
    other_scanner = spec.fit((200, 460), image_mpp=0.25)  # the same tissue at twice the resolution
    assert other_scanner.content_shape == fit.content_shape
    big = InputSpec("pixel-size", mpp=1.0, max_side=64).fit((1000, 500), image_mpp=0.5)
    assert big.content_shape == (64, 32)
    with pytest.raises(InputError, match="pixel size unknown"):
        spec.fit((100, 100), None, "core.png")


def test_a_core_is_read_onto_white_and_its_mask_onto_false(tmp_path) -> None:
    Image.fromarray(np.zeros((100, 200, 3), np.uint8)).save(tmp_path / "core.png")
    image, fit = read_input_image(tmp_path / "core.png", 0.5, InputSpec("square", size=64))
    m = input_mask(np.ones(fit.content_shape, bool), fit)
    assert image.shape == (64, 64, 3) and m.shape == (64, 64) and fit.content_shape == (32, 64)
    assert (image[:16] == 255).all() and (image[48:] == 255).all() and (image[16:48] == 0).all()
    assert not m[:16].any() and not m[48:].any() and m[16:48].all()
    image, fit = read_input_image(tmp_path / "core.png", 0.5, InputSpec("pixel-size", mpp=1.25))
    assert fit.content_shape == (40, 80) and image.shape == (64, 96, 3)
    assert (image[:40, :80] == 0).all() and (image[40:] == 255).all() and (image[:, 80:] == 255).all()


def test_a_mask_of_another_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="does not match"):
        input_mask(np.ones((50, 100), bool), square_fit((100, 200), 64))


def test_batches_pad_with_glass_no_tumour_and_no_extent() -> None:
    a = InputSpec("pixel-size", mpp=1.0).fit((64, 96), 1.0)
    b = InputSpec("pixel-size", mpp=1.0).fit((32, 32), 1.0)
    batch = collate_inputs([core_tensors(np.zeros((*f.shape, 3), np.uint8), np.ones(f.shape, bool), f)
                            for f in (a, b)])
    assert batch["image"].shape == (2, 3, 64, 96)
    assert torch.all(batch["image"][1, :, 32:] == 1.0) and torch.all(batch["image"][1, :, :32, :32] == 0)
    assert batch["mask"][1].sum() == 32 * 32 and batch["extent"][1].sum() == 32 * 32


def test_augmentation_moves_image_mask_and_extent_together() -> None:
    rng = np.random.default_rng(0)
    fit = InputSpec("pixel-size", mpp=1.0).fit((32, 64), 1.0)
    rgb = rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)
    mask = rgb[..., 0] > 128
    tensors = core_tensors(rgb, mask, fit)
    for turns in range(4):
        for fh in (False, True):
            for fv in (False, True):
                out = augment_tensors(tensors, turns, fh, fv)
                assert torch.equal((out["image"][0] * 255).round() > 128, out["mask"][0] > 0.5)
                assert out["extent"].shape[-2:] == out["image"].shape[-2:]
    out = augment_tensors(tensors, 1, False, False)
    assert torch.equal(out["image"], torch.rot90(tensors["image"], 1, (-2, -1)))


def test_click_counts_by_hand() -> None:
    clicks = np.array([[1.2, 2.6, 1], [1.4, 3.4, 1], [0.0, 0.0, 0], [9.0, -3.0, 0]])
    out = click_counts(clicks, (4, 5))
    assert out.shape == (2, 4, 5) and out.dtype == torch.float32
    assert out[0, 1, 3] == 2 and float(out[0].sum()) == 2  # both round to (1, 3)
    assert out[1, 0, 0] == 1 and out[1, 3, 0] == 1 and float(out[1].sum()) == 2  # one clipped in
    assert float(click_counts(None, (4, 5)).abs().sum()) == 0


def test_clicks_turn_with_the_mask_under_augmentation() -> None:
    mask = np.zeros((32, 32), bool)
    mask[3, 5] = True
    item = Stage2Item("c", "p", 0, 0.005, None, np.zeros((32, 32, 3), np.uint8), mask,
                      clicks=np.array([[3.0, 5.0, 1.0]]))
    torch.manual_seed(0)
    for _ in range(8):
        got = Stage2Dataset([item], augment=True, clicks=True)[0]
        assert torch.equal(got["clicks"][0] > 0, got["mask"][0] > 0)  # the click stays on its cell
    assert "clicks" not in Stage2Dataset([item])[0]
