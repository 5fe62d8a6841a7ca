"""The NLFT and CUT losses as pure functions of per-token log-probabilities.

Unlikelihood needs ``log(1 - P)``. Computed as ``log1p(-exp(log P))`` it loses all precision as P
nears 1 (``exp(log P)`` rounds to 1 in float32 once ``1 - P < 6e-8``), and clamping ``1 - P`` gives
a zero gradient exactly where the push should be strongest. :func:`nlft.method.logps.selective_log_softmax`
therefore returns ``log(1 - P)`` computed from the logits, ``logsumexp`` over the other tokens minus
``logsumexp`` over all, and the losses here take it as ``log1mp``.
"""

from __future__ import annotations

import torch

# Only for callers that have no log(1 - P) from the logits: 1 - P is floored there.
UNLIKELIHOOD_EPS = 1e-6


def unlikelihood(logps: torch.Tensor, log1mp: torch.Tensor | None = None, eps: float = UNLIKELIHOOD_EPS
                 ) -> torch.Tensor:
    """``-log(1 - P)``, elementwise, >= 0.

    Args:
        logps: ``(...)`` log-probabilities ``log P`` (<= 0).
        log1mp: ``(...)`` ``log(1 - P)`` computed stably from the logits (see the module docstring);
            when given it is used as is, with its exact gradient.
        eps: without ``log1mp``, ``1 - P`` is floored at ``eps`` (a fallback: no gradient where
            ``P > 1 - eps``).

    Returns:
        ``(...)`` the unlikelihood penalty.
    """
    if log1mp is not None:
        return -log1mp
    p = logps.exp().clamp(max=1.0 - eps)
    return -torch.log1p(-p)


def _normalise(total: torch.Tensor, mask: torch.Tensor, num_items_in_batch: int | torch.Tensor | None
               ) -> torch.Tensor:
    n = mask.sum() if num_items_in_batch is None else num_items_in_batch
    # An all-padding batch has total 0 and n 0: the clamp makes its loss 0 rather than NaN.
    n = torch.as_tensor(n, device=total.device, dtype=total.dtype).clamp(min=1)
    return total / n


def token_mean(per_token: torch.Tensor, keep: torch.Tensor, response_mask: torch.Tensor,
               num_items_in_batch: int | torch.Tensor | None = None) -> torch.Tensor:
    """``(1/N) * sum`` of ``per_token`` where ``keep``, N as in :func:`nlft_loss` (an extra loss term).

    Args:
        per_token: ``(B, T)`` values. keep: ``(B, T)`` bool, the tokens summed.
        response_mask: ``(B, T)`` bool, the response tokens counted in N when
            ``num_items_in_batch`` is None.
    """
    total = torch.where(keep.to(torch.bool), per_token, torch.zeros_like(per_token)).sum()
    return _normalise(total, response_mask.to(torch.bool), num_items_in_batch)


def nlft_loss(
    logps: torch.Tensor,
    token_scales: torch.Tensor,
    unlikelihood_mask: torch.Tensor,
    response_mask: torch.Tensor,
    num_items_in_batch: int | torch.Tensor | None = None,
    log1mp: torch.Tensor | None = None,
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
        log1mp: ``(B, T)`` ``log(1 - P_base)`` from the logits, with gradients (see the module
            docstring); None falls back to a floored ``1 - P``.

    Returns:
        The scalar loss.
    """
    mask = response_mask.to(torch.bool)
    ul = unlikelihood_mask.to(torch.bool)
    per_token = torch.where(ul, unlikelihood(logps, log1mp), -logps)
    per_token = per_token * token_scales.to(per_token.dtype)
    # A token of scale 0 contributes nothing, even where P = 0 makes -log P infinite (inf * 0 is NaN).
    keep = mask & (token_scales != 0)
    total = torch.where(keep, per_token, torch.zeros_like(per_token)).sum()
    return _normalise(total, mask, num_items_in_batch)


def cut_loss(
    logps: torch.Tensor,
    log1mp: torch.Tensor | None,
    judge_logps: torch.Tensor,
    correct: torch.Tensor,
    response_mask: torch.Tensor,
    num_items_in_batch: int | torch.Tensor | None = None,
    *,
    threshold: float = 1.1,
    weight_unlike: float = 1.0,
    per_example: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CUT (Xu et al. 2023, "Reasons to Reject?"), averaged as its code averages it or per token.

    For an incorrect output y with judgment J, each response token t contributes::

        l_t = 1/2 * ( -log P_judge(t)                                    likelihood under the judgment prompt
                    + ( w * -log(1 - P_base(t))   if P_judge(t) / P_base(t) > threshold      (a mistake)
                        -log P_base(t)            otherwise ) )                              (likelihood)

    with ``w = weight_unlike``; a token of a correct output contributes ``l_t = -log P_base(t)``.

    ``per_example`` (CUT's code, which trains one example per micro-batch): an output's loss is the
    mean of its ``l_t``, so an incorrect output's is ``(NLL_judge + L_unlike) / 2`` with both terms
    token means, and the loss is the sum of the outputs' losses over ``num_items_in_batch`` =
    the *outputs* of the accumulated batch (their mean). Otherwise every token weighs the same: the
    sum of all ``l_t`` over ``num_items_in_batch`` = the response *tokens* of the accumulated batch.
    Both views carry gradients, and the selection reads the current model's probabilities
    (detached), as CUT's code does.

    Args:
        logps: ``(B, T)`` log P_base, with gradients. log1mp: ``(B, T)`` log(1 - P_base) from the
            logits, or None (floored fallback).
        judge_logps: ``(B, T)`` log P_judge of the same tokens, with gradients (any value on
            correct rows).
        correct: ``(B,)`` bool. response_mask: ``(B, T)`` bool.
        num_items_in_batch: the outputs (``per_example``) or response tokens of the accumulated
            batch; None means this batch's.
        threshold: the ratio above which a token is a mistake. weight_unlike: ``w``.
        per_example: average per output, as CUT's code (default), or per token.

    Returns:
        ``(loss, selected)``: the scalar loss and the ``(B, T)`` bool mask of tokens trained away.
    """
    mask = response_mask.to(torch.bool)
    wrong = ~correct.to(torch.bool)[:, None] & mask
    ratio = (judge_logps.detach() - logps.detach()).exp()
    selected = (ratio > threshold) & wrong
    base_term = torch.where(selected, weight_unlike * unlikelihood(logps, log1mp), -logps)
    per_token = torch.where(wrong, 0.5 * (base_term - judge_logps), -logps)
    per_token = torch.where(mask, per_token, torch.zeros_like(per_token))
    if not per_example:
        return _normalise(per_token.sum(), mask, num_items_in_batch), selected
    per_output = per_token.sum(-1) / mask.sum(-1).clamp(min=1)
    rows = mask.any(-1)
    return _normalise(per_output.sum(), rows, num_items_in_batch), selected


def kl_penalty(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(current || reference) on the sampled tokens (always >= 0).

    ``k3 = exp(ref - cur) - (ref - cur) - 1`` (Schulman's estimator, as TRL's GRPO uses it): with the
    response sampled from the current or a nearby model it estimates the KL divergence without the
    full vocabulary, and its gradient pulls ``log P`` back towards ``ref`` from either side.

    Args:
        logps: ``(...)`` log P of the response tokens under the model being trained, with gradients.
        ref_logps: ``(...)`` log P under the reference (initial) model, detached.

    Returns:
        ``(...)`` the per-token penalty.
    """
    delta = ref_logps.detach() - logps
    return delta.exp() - delta - 1.0
