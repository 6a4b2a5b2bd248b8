"""A cell's patch: the hematoxylin / DAB square around it, by hand on tiny arrays."""

from __future__ import annotations

import numpy as np

from maskllp.detection.patches import (
    OD_STEPS_PER_UNIT,
    PATCH_SIDE_UM,
    cell_patches,
    patch_reach_px,
    patch_side_px,
    patches_to_od,
)


def test_the_side_is_the_physical_size_in_pixels_and_even() -> None:
    assert patch_side_px(2.0) == round(2 * PATCH_SIDE_UM) == 48  # 0.5 um/px
    assert patch_side_px(1.0) == 24 and patch_side_px(0.01) == 8  # never under 8 px
    assert patch_side_px(1.0 / 0.3) % 2 == 0
    assert patch_reach_px(2.0) == 24


def test_a_patch_holds_the_hematoxylin_and_dab_around_the_cell_quantised() -> None:
    stains = np.zeros((60, 60, 3), np.float32)
    stains[30, 31] = (0.5, 9.0, 1.0)  # H 0.5, eosin (left out), DAB 1.0, one pixel right of the cell
    stains[0, 0, 2] = 10.0  # beyond what uint8 holds: clipped
    patch = cell_patches(stains, np.array([[30.2, 29.8], [3.0, 3.0]]), 1.0)  # 24 px, centred on (30, 30)
    assert patch.shape == (2, 2, 24, 24) and patch.dtype == np.uint8
    first = patch[0]
    assert first[0, 12, 13] == 32 and first[1, 12, 13] == 64  # row 30 - 30 + 12, column 31 - 30 + 12
    assert first.sum() == 32 + 64  # nothing else, and no eosin
    # a cell 3 px from the corner: rows and columns past the edge repeat row / column 0
    corner = patch[1, 1]
    assert np.all(corner[:10, :10] == 255) and corner[10:, :].sum() == 0 and corner[:, 10:].sum() == 0
    assert np.allclose(patches_to_od(first)[1, 12, 13], 64 / OD_STEPS_PER_UNIT)


def test_no_cells_give_no_patches() -> None:
    assert cell_patches(np.zeros((8, 8, 3)), np.zeros((0, 2)), 2.0).shape == (0, 2, 48, 48)


def test_the_patch_encoder_pools_before_its_relu_with_the_values_and_weights_of_the_other_order() -> None:
    """Max pooling and ReLU commute, so the encoder may pool first (cheaper); the weights keep their
    indices, so weights saved from a ReLU-then-pool encoder load and give the same codes."""
    import torch
    from torch import nn

    from maskllp.backbones import patch_encoder

    torch.manual_seed(0)
    fast = patch_encoder(1, 4).eval()
    layers: list[nn.Module] = []
    channels = 1
    for k, out in enumerate((4, 8, 16, 16)):  # the ReLU-then-pool order, built by hand
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
        layers += [nn.MaxPool2d(2)] if k < 3 else []
        channels = out
    reference = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    for m in reference.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.bias.data.uniform_(-0.5, 0.5)
    fast.load_state_dict(reference.state_dict())
    x = torch.randn(5, 1, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), reference(x))


def test_patches_equal_clipped_indexing_at_and_past_the_edges() -> None:
    rng = np.random.default_rng(5)
    stains = (rng.random((60, 50, 3)) * 3).astype(np.float32)
    yx = np.concatenate([rng.uniform(-40, 100, (200, 2)), [[0, 0], [59, 49], [-500, 700]]])
    for px_per_um in (2.0, 0.7):
        side = patch_side_px(px_per_um)
        quantised = np.clip(np.rint(stains[..., [0, 2]] * 64.0), 0, 255).astype(np.uint8)
        c = np.rint(yx).astype(np.int64)
        offsets = np.arange(side) - side // 2
        rows = np.clip(c[:, :1] + offsets, 0, 59)[:, :, None]
        cols = np.clip(c[:, 1:] + offsets, 0, 49)[:, None, :]
        expected = quantised[rows, cols].transpose(0, 3, 1, 2)
        np.testing.assert_array_equal(cell_patches(stains, yx, px_per_um), expected)
