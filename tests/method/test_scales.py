"""NLFT scales against hand-derived values (paper Eq. 1-4) and the CUT selection."""

from __future__ import annotations

import math

import pytest
import torch

from nlft.method.scales import batch_token_scales, correct_token_scales, cut_token_scales, incorrect_token_scales


def test_correct_scales_by_hand():
    """p0=0.95, c1=5, c2=0.3, c3=0.6.

    p=0.975: saliency, 1 + (0.025/0.05)^5 = 1 + 0.5^5 = 1.03125
    p=1.0:   saliency, 1 + 1^5 = 2
    p=0.95:  not saliency (strict >), irrelevant: (0.95/0.95)^0.6 = 1
    p=0.475: irrelevant, 0.5^0.6 = 0.659754; as sub-saliency 0.5^0.3 = 0.812252
    p=0:     irrelevant, 0
    """
    p = torch.tensor([0.975, 1.0, 0.95, 0.475, 0.475, 0.0])
    sub = torch.tensor([False, True, False, False, True, True])
    scales, saliency = correct_token_scales(p, sub)
    expected = torch.tensor([1.03125, 2.0, 1.0, 0.5**0.6, 0.5**0.3, 0.0])
    torch.testing.assert_close(scales, expected, rtol=1e-5, atol=1e-6)
    assert saliency.tolist() == [True, True, False, False, False, False]


def test_correct_scales_shape_and_no_sub():
    p = torch.tensor([[0.99, 0.5], [0.2, 0.96]])
    scales, saliency = correct_token_scales(p)
    assert scales.shape == p.shape and saliency.dtype == torch.bool
    assert scales[0, 1].item() == pytest.approx((0.5 / 0.95) ** 0.6, rel=1e-5)
    assert scales[1, 1].item() == pytest.approx(1 + (0.01 / 0.05) ** 5, rel=1e-5)


def test_incorrect_scales_by_hand():
    """r0=1.5, p0=0.01.

    token 0: p_base=.1, p_std=.1, p_judge=.3 -> r1=r2=3 > 1.5, p_judge > .01: erroneous,
             scale 2*sigmoid(3-1.5) = 2/(1+e^-1.5) = 1.635149
    token 1: p_base=.2, p_judge=.25 -> r1=1.25: irrelevant -> 0
    token 2: ratios 5 but p_judge=.005 < p0: irrelevant -> 0
    token 3: r1=3 but p_std=.5 -> r2=.6: irrelevant -> 0
    """
    p_base = torch.tensor([0.1, 0.2, 0.001, 0.1])
    p_std = torch.tensor([0.1, 0.2, 0.001, 0.5])
    p_judge = torch.tensor([0.3, 0.25, 0.005, 0.3])
    scales, err = incorrect_token_scales(p_base, p_std, p_judge)
    assert err.tolist() == [True, False, False, False]
    torch.testing.assert_close(scales, torch.tensor([2 / (1 + math.exp(-1.5)), 0.0, 0.0, 0.0]))


def test_incorrect_near_error_tokens_get_zero_even_in_reference_mode():
    p_base = torch.full((20,), 0.2)
    p_std = torch.full((20,), 0.64)
    p_judge = torch.full((20,), 0.2)
    p_judge[5], p_base[5], p_std[5] = 0.9, 0.1, 0.1  # the single erroneous token: 1/20 = 5% <= 6%
    near = torch.zeros(20, dtype=torch.bool)
    near[4] = near[6] = True
    scales, err = incorrect_token_scales(p_base, p_std, p_judge, near, irrelevant="reference")
    assert err.nonzero().flatten().tolist() == [5]
    assert scales[5].item() == pytest.approx(2 / (1 + math.exp(-(9 - 1.5))), rel=1e-5)
    assert scales[4].item() == 0.0 and scales[6].item() == 0.0
    # irrelevant tokens: sqrt(0.64) = 0.8
    assert scales[0].item() == pytest.approx(0.8) and scales[19].item() == pytest.approx(0.8)


def test_incorrect_reference_mode_filters_mostly_wrong_outputs():
    """With the reference code's threshold, two erroneous tokens in 20 = 10% > 6%: irrelevant tokens get 0."""
    p_base = torch.full((20,), 0.2)
    p_std = torch.full((20,), 0.64)
    p_judge = torch.full((20,), 0.2)
    for i in (3, 9):
        p_judge[i], p_base[i], p_std[i] = 0.9, 0.1, 0.1
    scales, err = incorrect_token_scales(p_base, p_std, p_judge, irrelevant="reference", max_error_fraction=0.06)
    assert err.sum().item() == 2
    assert scales[~err].abs().sum().item() == 0.0
    # the fraction is per output (last axis): a second row with one error in 20 keeps sqrt(P_std)
    p2 = [t.clone() for t in (p_base, p_std, p_judge)]
    p2[2][9], p2[0][9], p2[1][9] = 0.2, 0.2, 0.64
    scales2, _ = incorrect_token_scales(*(torch.stack([a, b]) for a, b in zip((p_base, p_std, p_judge), p2)),
                                        irrelevant="reference", max_error_fraction=0.06)
    assert scales2[0, 0].item() == 0.0 and scales2[1, 0].item() == pytest.approx(0.8)


def test_scales_finite_at_probability_extremes():
    zeros, ones = torch.zeros(3), torch.ones(3)
    for args in ((zeros, zeros, ones), (ones, ones, ones), (zeros, ones, zeros), (zeros, zeros, zeros)):
        scales, _ = incorrect_token_scales(*args, irrelevant="reference")
        assert torch.isfinite(scales).all()
        assert ((scales >= 0) & (scales <= 2)).all()
    for p in (zeros, ones):
        scales, _ = correct_token_scales(p, torch.ones(3, dtype=torch.bool))
        assert torch.isfinite(scales).all()


def test_cut_selection_by_hand():
    """ratio = p_judge / p_base: 2.0 > 1.1 selected; 1.05 not; 1.2 selected. Unselected tokens keep likelihood (1)."""
    scales, sel = cut_token_scales(torch.tensor([0.1, 0.2, 0.5]), torch.tensor([0.2, 0.21, 0.6]), weight_unlike=0.5)
    assert sel.tolist() == [True, False, True]
    assert scales.tolist() == [0.5, 1.0, 0.5]


def test_batch_token_scales_mixes_rows():
    """Row 0 correct, row 1 incorrect; the last column of row 1 is padding."""
    p_base = torch.tensor([[0.5, 0.5, 0.5], [0.1, 0.2, 0.1]])
    p_std = torch.tensor([[0.975, 0.475, 0.0], [0.1, 0.2, 0.1]])
    p_judge = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.25, 0.9]])
    correct = torch.tensor([True, False])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    lo = torch.tensor([[0, 0, 2], [0, 1, 2]])
    hi = torch.tensor([[1, 1, 2], [0, 1, 2]])  # token 1 of row 0 is in the phrase of token 0
    ts = batch_token_scales(p_base, p_std, p_judge, correct, mask, (lo, hi))
    expected = torch.tensor([[1.03125, 0.5**0.3, 0.0], [2 / (1 + math.exp(-1.5)), 0.0, 0.0]])
    torch.testing.assert_close(ts.scales, expected, rtol=1e-5, atol=1e-6)
    assert ts.saliency.tolist() == [[True, False, False], [False, False, False]]
    assert ts.sub_saliency.tolist() == [[False, True, False], [False, False, False]]
    assert ts.unlikelihood.tolist() == [[False, False, False], [True, False, False]]

    nll = batch_token_scales(p_base, None, None, correct, mask, loss_type="nll")
    assert nll.scales.tolist() == mask.float().tolist() and not nll.unlikelihood.any()

    cut = batch_token_scales(p_base, None, p_judge, correct, mask, loss_type="cut")
    # correct row: likelihood everywhere; incorrect row: ratios 3, 1.25 -> both > 1.1; padding excluded
    assert cut.scales.tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
    assert cut.unlikelihood.tolist() == [[False, False, False], [True, True, False]]
    with pytest.raises(ValueError, match="loss_type"):
        batch_token_scales(p_base, p_std, p_judge, correct, mask, loss_type="dpo")
