"""The NLFT loss (paper Eq. 5) as a pure function of per-token log-probabilities."""

from __future__ import annotations

import torch

# 1 - P is clamped away from 0 in the unlikelihood term, so that log(1 - P) stays finite.
UNLIKELIHOOD_EPS = 1e-6


def unlikelihood(logps: torch.Tensor, eps: float = UNLIKELIHOOD_EPS) -> torch.Tensor:
    """``-log(1 - P)`` from ``logps = log P``, elementwise, finite for every ``P`` in [0, 1].

    Args:
        logps: ``(...)`` log-probabilities (<= 0).

    Returns:
        ``(...)`` the unlikelihood penalty, >= 0.
    """
    p = logps.exp().clamp(max=1.0 - eps)
    return -torch.log1p(-p)


def nlft_loss(
    logps: torch.Tensor,
    token_scales: torch.Tensor,
    unlikelihood_mask: torch.Tensor,
    response_mask: torch.Tensor,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Scaled likelihood / unlikelihood loss over response tokens (paper Eq. 5, with log(1 - P)).

    ``L = (1 / N) * sum_t S_t * (-log P_t   if not unlikelihood_t else   -log(1 - P_t))``
    over response tokens, where ``N`` is the number of response tokens in the whole accumulated
    batch (``num_items_in_batch``), so that gradient accumulation 1xK equals Kx1.

    Args:
        logps: ``(B, T)`` log P_base of each response token, with gradients.
        token_scales: ``(B, T)`` detached scales S_t (0 means "not trained").
        unlikelihood_mask: ``(B, T)`` bool, True where the token is trained away (erroneous tokens
            of incorrect outputs).
        response_mask: ``(B, T)`` bool, True on real response tokens.
        num_items_in_batch: ``N``; None means the number of response tokens in this batch.

    Returns:
        The scalar loss.
    """
    mask = response_mask.to(torch.bool)
    nll = -logps
    per_token = torch.where(unlikelihood_mask.to(torch.bool), unlikelihood(logps), nll)
    per_token = per_token * token_scales.to(per_token.dtype)
    # A token of scale 0 contributes nothing, even where P = 0 makes -log P infinite (inf * 0 is NaN).
    keep = mask & (token_scales != 0)
    total = torch.where(keep, per_token, torch.zeros_like(per_token)).sum()
    n = mask.sum() if num_items_in_batch is None else num_items_in_batch
    # An all-padding batch has total 0 and n 0: the clamp makes its loss 0 rather than NaN.
    n = torch.as_tensor(n, device=total.device, dtype=total.dtype).clamp(min=1)
    return total / n
