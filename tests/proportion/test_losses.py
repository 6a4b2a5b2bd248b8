"""Every Table 1 loss against hand-computed values, and finite gradients where logs meet 0 and 1."""

from __future__ import annotations

import math

import pytest
import torch

from maskllp.config.proportion import LossConfig
from maskllp.errors import InputError
from maskllp.intervals import PAPER_FIVE
from maskllp.methods import get_method
from maskllp.proportion import losses

CFG = LossConfig()
# KL((0.375, 0.625) || (0.5, 0.5)) = 0.375 ln(0.75) + 0.625 ln(1.25), computed by hand
KL_0375_05 = 0.03158394240196326
# KL((0.005, 0.995) || (0.5, 0.5))
KL_0005_05 = 0.6616681146127785


def t(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float32)


def k(*v: int) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.int64)


def test_binary_kl_hand_values() -> None:
    got = losses.binary_kl(t(0.375, 0.005, 0.3), t(0.5, 0.5, 0.3), 1e-6)
    assert got.tolist() == pytest.approx([KL_0375_05, KL_0005_05, 0.0], abs=1e-6)


def test_binary_kl_finite_at_zero_and_one() -> None:
    r_hat = t(0.0, 1.0, 0.0, 1.0).requires_grad_()
    kl = losses.binary_kl(t(0.005, 0.005, 0.0, 1.0), r_hat, 1e-6)
    kl.sum().backward()
    assert torch.isfinite(kl).all() and torch.isfinite(r_hat.grad).all()
    assert kl[2].item() == pytest.approx(0.0, abs=1e-5) and kl[3].item() == pytest.approx(0.0, abs=1e-5)
    # 0.995 * ln(0.995 / 1e-6): the truth 0.005 against a prediction clamped at 1 - eps
    assert kl[1].item() == pytest.approx(0.005 * math.log(0.005) + 0.995 * math.log(0.995 / 1e-6), rel=1e-3)


def test_prop_is_the_kl_to_the_interval_midpoint() -> None:
    loss = losses.proportion_loss(PAPER_FIVE, CFG)
    # interval 2 = '25-50 %' (midpoint 0.375), interval 0 = '0-1 %' (midpoint 0.005)
    assert loss(t(0.5, 0.5), k(2, 0)).item() == pytest.approx((KL_0375_05 + KL_0005_05) / 2, rel=1e-5)


def test_weighted_focal_proportion_loss_gamma_per_interval() -> None:
    loss = losses.weighted_focal_proportion_loss(PAPER_FIVE, CFG)
    assert loss.gammas.tolist() == [0.0, 2.0, 2.0, 2.0, 2.0]
    per = loss.per_core(t(0.5, 0.5), k(0, 2))
    # gamma 0 for '0-1 %': the plain KL; gamma 2 for '25-50 %': (0.375 - 0.5)^2 * KL
    assert per.tolist() == pytest.approx([KL_0005_05, 0.125 ** 2 * KL_0375_05], rel=1e-5)


def test_focalprop_uses_gamma_two_everywhere() -> None:
    loss = losses.focal_proportion_loss(PAPER_FIVE, CFG)
    per = loss.per_core(t(0.5, 0.5), k(0, 2))
    assert per.tolist() == pytest.approx([0.495 ** 2 * KL_0005_05, 0.125 ** 2 * KL_0375_05], rel=1e-5)


def test_gammas_are_settable() -> None:
    loss = losses.weighted_focal_proportion_loss(PAPER_FIVE, LossConfig(gammas=[1, 1, 0, 3, 3]))
    assert loss.per_core(t(0.5), k(0)).item() == pytest.approx(0.495 * KL_0005_05, rel=1e-5)
    assert loss.per_core(t(0.5), k(2)).item() == pytest.approx(KL_0375_05, rel=1e-5)


def test_wprop_weights_grow_as_the_interval_narrows() -> None:
    w = losses.inverse_width_weights(PAPER_FIVE)
    # 1 / width = (100, 4.1667, 4, 4, 4), divided by its mean 23.2333
    assert w == pytest.approx([4.304161, 0.179340, 0.172166, 0.172166, 0.172166], rel=1e-5)
    loss = losses.weighted_proportion_loss(PAPER_FIVE, CFG)
    assert loss(t(0.5, 0.5), k(0, 2)).item() == pytest.approx(
        (4.304161 * KL_0005_05 + 0.172166 * KL_0375_05) / 2, rel=1e-5)
    custom = losses.weighted_proportion_loss(PAPER_FIVE, LossConfig(interval_weights=[2, 1, 1, 1, 1]))
    assert custom(t(0.5), k(0)).item() == pytest.approx(2 * KL_0005_05, rel=1e-5)


def test_listnet_hand_values() -> None:
    loss = losses.ListNetLoss(PAPER_FIVE.midpoints.tolist())
    # a uniform prediction over two cores: cross-entropy ln 2 whatever the truth
    assert loss(t(0.5, 0.5), k(0, 4)).item() == pytest.approx(math.log(2), rel=1e-5)
    # truth top-one probabilities: odds 0.005/0.995 and 0.875/0.125 normalised = (7.1736e-4, 0.99928)
    # prediction r_hat (0.2, 0.6): odds 0.25 and 1.5 normalised
    assert loss(t(0.2, 0.6), k(0, 4)).item() == pytest.approx(0.155436, rel=1e-4)
    # predicting the midpoints gives the entropy of the truth, the minimum
    assert loss(t(0.005, 0.875), k(0, 4)).item() == pytest.approx(0.005911, rel=1e-3)
    assert loss(t(0.3), k(1)).item() == 0.0  # one core: nothing to rank


def test_wprop_listnet_is_the_weighted_sum() -> None:
    cfg = LossConfig(listnet_weight=0.5)
    combined = losses.wprop_listnet_loss(PAPER_FIVE, cfg)
    r, iv = t(0.2, 0.6, 0.1), k(0, 4, 2)
    expected = losses.weighted_proportion_loss(PAPER_FIVE, cfg)(r, iv) + 0.5 * losses.ListNetLoss(
        PAPER_FIVE.midpoints.tolist())(r, iv)
    assert combined(r, iv).item() == pytest.approx(expected.item(), rel=1e-6)


def test_lpi_zero_inside_quadratic_outside() -> None:
    loss = losses.interval_loss(PAPER_FIVE, CFG)
    assert loss(t(0.1, 0.01, 0.25), k(1, 1, 1)).item() == 0.0
    assert loss(t(0.35), k(1)).item() == pytest.approx(0.01, rel=1e-5)  # 0.1 above 0.25
    assert loss(t(0.0), k(1)).item() == pytest.approx(1e-4, rel=1e-4)  # 0.01 below 0.01
    assert loss(t(0.35, 0.0), k(1, 1)).item() == pytest.approx((0.01 + 1e-4) / 2, rel=1e-4)


def test_ordinal_targets_and_loss() -> None:
    assert losses.ordinal_targets(k(0, 2, 4), 4).tolist() == [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    loss = losses.ordinal_loss(PAPER_FIVE, CFG)
    # zero logits: each of the 4 outputs costs ln 2
    assert loss(torch.zeros(3, 4), k(0, 2, 4)).item() == pytest.approx(4 * math.log(2), rel=1e-6)
    confident = torch.tensor([[9.0, 9.0, -9.0, -9.0]])
    assert loss(confident, k(2)).item() < 1e-3


def test_class_cross_entropy() -> None:
    loss = losses.class_loss(PAPER_FIVE, CFG)
    assert loss(torch.zeros(2, 5), k(0, 3)).item() == pytest.approx(math.log(5), rel=1e-6)


@pytest.mark.parametrize("name", ["prop", "wprop", "wprop-listnet", "focalprop", "ours", "lpi"])
def test_gradients_finite_at_extremes_and_at_the_truth(name: str) -> None:
    loss = get_method(name).build_loss(PAPER_FIVE, CFG)
    r_hat = t(0.0, 1e-9, 0.005, 0.375, 1.0, 0.5).requires_grad_()
    value = loss(r_hat, k(0, 0, 0, 2, 4, 3))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(r_hat.grad).all()


@pytest.mark.parametrize("name", ["prop", "focalprop", "ours"])
def test_zero_loss_and_gradient_at_the_midpoint(name: str) -> None:
    loss = get_method(name).build_loss(PAPER_FIVE, CFG)
    r_hat = t(0.005, 0.375).requires_grad_()
    value = loss(r_hat, k(0, 2))
    value.backward()
    assert value.item() == pytest.approx(0.0, abs=1e-6)
    assert r_hat.grad.abs().max().item() < 1e-3


def test_focal_gradient_finite_for_small_gamma_at_the_truth() -> None:
    loss = losses.FocalProportionLoss([0.3, 0.7], gammas=[0.5, 0.5])
    r_hat = t(0.3).requires_grad_()
    loss(r_hat, k(0)).backward()
    assert torch.isfinite(r_hat.grad).all()


def test_wrong_number_of_gammas_is_an_input_error() -> None:
    with pytest.raises(InputError, match="proportion.loss"):
        get_method("ours").build_loss(PAPER_FIVE, LossConfig(gammas=[0, 2]))


def test_bad_loss_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        LossConfig(eps=0.5)
    with pytest.raises(ValueError):
        LossConfig(gammas=[0, -1, 2, 2, 2])


# ------------------------------------------------------------------ clicked cells on the maps
def test_click_share_loss_by_hand() -> None:
    # one core, a 1 x 2 map grid over a 2 x 4 input (map cells of 2 x 2 pixels)
    maps = torch.tensor([[[[3.0, 1.0]], [[1.0, 3.0]]]], requires_grad=True)  # shares 0.75, 0.25
    clicks = torch.zeros(1, 2, 2, 4)
    clicks[0, 0, 1, 1] = 1.0  # a positive click in map cell 0
    clicks[0, 1, 0, 3] = 2.0  # two negative clicks in map cell 1
    clicks[0, 0, 1, 2] = 1.0  # a positive click in map cell 1
    loss = losses.ClickShareLoss()(maps, clicks)
    expected = -(math.log(0.75) + 2 * math.log(0.75) + math.log(0.25)) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert maps.grad[0, 0, 0, 0] < 0  # more F_p where a positive cell was clicked lowers the loss


def test_click_share_loss_is_zero_with_a_gradient_without_clicks() -> None:
    maps = torch.rand(2, 2, 3, 3, requires_grad=True)
    loss = losses.ClickShareLoss()(maps, torch.zeros(2, 2, 24, 24))
    assert loss.item() == 0.0
    loss.backward()
    assert maps.grad is not None and torch.all(maps.grad == 0)
