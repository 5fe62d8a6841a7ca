"""The NLFT loss (Eq. 5) against hand-derived values."""

from __future__ import annotations

import math

import torch

from nlft.method.loss import nlft_loss, unlikelihood


def test_loss_by_hand():
    """P = [0.5, 0.25 | pad], S = [2, 1], token 1 trained away, N = 2.

    L = (2 * -log 0.5 + 1 * -log(1 - 0.25)) / 2 = (1.386294 + 0.287682) / 2 = 0.836988
    """
    logps = torch.log(torch.tensor([[0.5, 0.25, 0.9]]))
    scales = torch.tensor([[2.0, 1.0, 5.0]])
    ul = torch.tensor([[False, True, False]])
    mask = torch.tensor([[True, True, False]])
    loss = nlft_loss(logps, scales, ul, mask)
    assert math.isclose(loss.item(), (2 * math.log(2) - math.log(0.75)) / 2, rel_tol=1e-6)
    # normalised by the accumulated batch size when given
    assert math.isclose(nlft_loss(logps, scales, ul, mask, num_items_in_batch=4).item(), loss.item() / 2, rel_tol=1e-6)


def test_loss_gradient_by_hand():
    """d/dlogp of -S log P is -S; of -S log(1 - P) with P = e^logp it is S * P / (1 - P)."""
    logps = torch.log(torch.tensor([[0.5, 0.25]])).requires_grad_()
    nlft_loss(logps, torch.tensor([[2.0, 1.0]]), torch.tensor([[False, True]]), torch.ones(1, 2, dtype=torch.bool),
              num_items_in_batch=1).backward()
    torch.testing.assert_close(logps.grad, torch.tensor([[-2.0, 0.25 / 0.75]]))


def test_unlikelihood_finite_at_p_equal_one():
    vals = unlikelihood(torch.tensor([0.0, -1e-12, -30.0]))
    assert torch.isfinite(vals).all() and vals[0] > 10 and vals[2] < 1e-12


def test_all_padding_batch_gives_zero_not_nan():
    logps = torch.zeros(2, 3, requires_grad=True)
    loss = nlft_loss(logps, torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool), torch.zeros(2, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logps.grad).all()
