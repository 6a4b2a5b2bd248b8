"""Masked sums with hand-made masks and maps; r_hat undefined on an empty mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskllp.intervals import PAPER_FIVE
from maskllp.proportion.inputs import InputSpec, square_fit
from maskllp.proportion.masked import mask_to_grid, masked_sums, proportion_from_sums
from maskllp.proportion.model import ProportionModel
from maskllp.proportion.network import NetworkSpec, ProportionNet


def hand_mask() -> torch.Tensor:
    """16 x 16 input, 2 x 2 map grid (8 px cells): top-left cell all tumour, top-right cell half."""
    m = torch.zeros(1, 1, 16, 16)
    m[0, 0, :8, :8] = 1
    m[0, 0, :8, 8:] = torch.tensor([1.0, 0.0]).repeat(4).view(1, 8).expand(8, 8)
    return m


def test_mask_brought_to_the_grid_by_area_fraction() -> None:
    grid = mask_to_grid(hand_mask(), (2, 2))
    assert grid[0, 0].tolist() == [[1.0, 0.5], [0.0, 0.0]]


def test_masked_sums_and_proportion_by_hand() -> None:
    maps = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[4.0, 3.0], [2.0, 1.0]]]])  # F_p, F_n
    sums, area = masked_sums(maps, hand_mask())
    # s_p = 1 * 1 + 2 * 0.5 = 2; s_n = 4 * 1 + 3 * 0.5 = 5.5; area 1.5 grid cells
    assert sums[0].tolist() == pytest.approx([2.0, 5.5])
    assert area.tolist() == pytest.approx([1.5])
    r_hat, defined = proportion_from_sums(sums, area)
    assert defined.tolist() == [True] and r_hat.item() == pytest.approx(2.0 / 7.5)


def test_empty_mask_leaves_r_hat_undefined_with_finite_gradients() -> None:
    maps = torch.rand(2, 2, 2, 2, requires_grad=True)
    mask = hand_mask().repeat(2, 1, 1, 1)
    mask[1] = 0
    sums, area = masked_sums(maps, mask)
    r_hat, defined = proportion_from_sums(sums, area)
    assert defined.tolist() == [True, False]
    assert r_hat[1].item() == 0.0 and not torch.isnan(r_hat).any()
    r_hat.sum().backward()
    assert torch.isfinite(maps.grad).all()


def test_network_maps_are_non_negative_at_stride_8() -> None:
    torch.manual_seed(0)
    net = ProportionNet(NetworkSpec("maps", 2)).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 64, 64), torch.ones(2, 1, 64, 64))
    assert out.maps.shape == (2, 2, 8, 8) and (out.maps > 0).all()
    assert out.sums.shape == (2, 2) and out.defined.all()
    assert torch.allclose(out.r_hat, out.sums[:, 0] / out.sums.sum(1))


def test_mask_selects_which_map_cells_count() -> None:
    torch.manual_seed(0)
    net = ProportionNet(NetworkSpec("maps", 2)).eval()
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :8, :16] = 1  # map cells (0, 0) and (0, 1)
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 64), mask)
    assert out.sums[0].tolist() == pytest.approx(out.maps[0, :, 0, :2].sum(-1).tolist(), rel=1e-5)


def test_pooled_heads_give_logits() -> None:
    net = ProportionNet(NetworkSpec("ordinal", 4)).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 64, 64), torch.zeros(2, 1, 64, 64))
    assert out.logits.shape == (2, 4) and out.defined.all() and out.r_hat is None


def test_prediction_on_an_empty_mask_is_undefined_not_zero() -> None:
    torch.manual_seed(0)
    square = InputSpec("square", size=64)
    model = ProportionModel(ProportionNet(NetworkSpec("maps", 2)), "ours", PAPER_FIVE, square)
    images = np.full((2, 64, 64, 3), 200, np.uint8)
    masks = np.zeros((2, 64, 64), bool)
    masks[0, 10:30, 10:30] = True
    fit = square_fit((64, 64), 64)
    pred = model.predict_cores([(im, m, fit) for im, m in zip(images, masks, strict=True)])
    assert pred[0].proportion is not None and 0 < pred[0].proportion < 1
    assert pred[0].interval == PAPER_FIVE.index_of(pred[0].proportion)
    assert pred[1].proportion is None and pred[1].interval is None


def test_padding_adds_nothing_to_the_masked_sums() -> None:
    """Map values where the mask is 0 (the padding of a batch) do not reach s_p or s_n."""
    maps = torch.rand(1, 2, 8, 8) + 0.1
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :40, :24] = 1.0
    sums, _ = masked_sums(maps, mask)
    padded = maps.clone()
    padded[..., 5:, :] = 100.0  # rows 40-63 of the input: all padding
    padded[..., :, 3:] = 100.0
    assert torch.allclose(masked_sums(padded, mask)[0], sums)


def test_a_core_gets_the_same_prediction_alone_and_in_a_batch_of_other_sizes() -> None:
    from maskllp.proportion.inputs import InputSpec

    torch.manual_seed(0)
    spec = InputSpec("pixel-size", mpp=1.0)
    model = ProportionModel(ProportionNet(NetworkSpec("maps", 2)), "ours", PAPER_FIVE, spec)
    rng = np.random.default_rng(0)
    small, big = spec.fit((70, 90), 1.0), spec.fit((200, 260), 1.0)
    core = (rng.integers(0, 255, (*small.shape, 3)).astype(np.uint8), np.ones(small.shape, bool), small)
    other = (rng.integers(0, 255, (*big.shape, 3)).astype(np.uint8), np.ones(big.shape, bool), big)
    alone = model.predict_cores([core])[0]
    for batched in model.predict_cores([other, core, other, core], batch_size=2)[1::2]:
        # the same up to float rounding (a batch of two computes in another order than a batch of one)
        assert (batched.proportion, batched.s_p, batched.s_n) == pytest.approx(
            (alone.proportion, alone.s_p, alone.s_n), rel=1e-5)
