"""Per-token NLFT scales (paper Eq. 1-4) and the CUT token selection, as pure functions of tensors.

Every function here takes per-token probabilities of the *same* response tokens under different
prompts (views) and returns tensors of the same shape. Shapes are written ``(...)`` for "any shape";
the last dimension is the token axis where a per-example quantity is needed. Inputs are detached
measurements: nothing here needs gradients.

Vocabulary: ``p_base`` = P(y_t | X_base, y_<t), ``p_std`` = P(y_t | X_standard, y_<t),
``p_judge`` = P(y_t | X_judge, y_<t).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from nlft.method.params import IRRELEVANT_RULES, ScaleParams

__all__ = ["IRRELEVANT_RULES", "PROB_FLOOR", "ScaleParams", "TokenScales", "batch_token_scales",
           "class_balance_weights", "class_counts", "correct_token_scales", "cut_token_scales", "error_share",
           "incorrect_token_scales"]

# Smallest probability used as a divisor, so that ratios of probabilities stay finite.
PROB_FLOOR = 1e-12


def error_share(erroneous: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Share of each output's response tokens that are erroneous.

    Args:
        erroneous: ``(..., T)`` bool. response_mask: ``(..., T)`` bool, the real response tokens.

    Returns:
        ``(...)`` float shares in [0, 1] (0 for an output with no response token).
    """
    mask = response_mask.to(torch.bool)
    return (erroneous & mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)


def class_balance_weights(n_correct: int, n_incorrect: int) -> tuple[float, float]:
    """Per-token weights that give correct and incorrect outputs half of the loss each.

    With ``N = n_correct + n_incorrect`` response tokens in the training set, a token of a correct
    output gets ``N / (2 n_correct)`` and one of an incorrect output ``N / (2 n_incorrect)``; the
    token-normalised loss ``(1/N) sum_t w_t l_t`` is then, in expectation, the mean of the two
    classes' token means, so a data set of 80% incorrect outputs cannot be dominated by them. The
    weights are fixed from the whole data set, so gradient accumulation stays exact. A class with no
    token leaves the other at 1.

    Returns:
        ``(w_correct, w_incorrect)``.
    """
    if n_correct <= 0 or n_incorrect <= 0:
        return 1.0, 1.0
    total = n_correct + n_incorrect
    return total / (2 * n_correct), total / (2 * n_incorrect)


def correct_token_scales(
    p_std: torch.Tensor,
    sub_saliency: torch.Tensor | None = None,
    *,
    p0: float = 0.95,
    c1: float = 5.0,
    c2: float = 0.3,
    c3: float = 0.6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scales of the tokens of a *correct* output (paper Eq. 3).

    Saliency tokens (``p_std > p0``) get ``1 + ((p_std - p0) / (1 - p0)) ** c1`` (in [1, 2]);
    sub-saliency tokens (in the phrase of a saliency token, not saliency themselves) get
    ``(p_std / p0) ** c2``; the other ("irrelevant") tokens get ``(p_std / p0) ** c3``. With
    ``c2 < c3`` a sub-saliency token is weighted more than an irrelevant token of equal probability.

    Args:
        p_std: ``(...)`` probabilities of the response tokens under X_standard, in [0, 1].
        sub_saliency: ``(...)`` bool, True for tokens in the phrase of a saliency token; None means
            no phrase tokens. Saliency tokens inside it stay saliency.
        p0: saliency threshold (paper p0_correct).
        c1, c2, c3: exponents of the three classes.

    Returns:
        ``(scales, saliency)``: float scales and the bool saliency mask, both of shape ``(...)``.
    """
    if not 0.0 < p0 < 1.0:
        raise ValueError(f"p0 must be in (0, 1), got {p0}")
    p = p_std.detach().float().clamp(0.0, 1.0)
    saliency = p > p0
    rel = (p / p0).clamp(max=1.0)  # non-saliency tokens have p <= p0; the clamp guards rounding only
    salient_scale = 1.0 + ((p - p0) / (1.0 - p0)).clamp(0.0, 1.0) ** c1  # float32 rounding could exceed 2
    scales = torch.where(saliency, salient_scale, rel**c3)
    if sub_saliency is not None:
        sub = sub_saliency.to(torch.bool) & ~saliency
        scales = torch.where(sub, rel**c2, scales)
    return scales, saliency


def incorrect_token_scales(
    p_base: torch.Tensor,
    p_std: torch.Tensor,
    p_judge: torch.Tensor,
    near_error: torch.Tensor | None = None,
    *,
    r0: float = 1.5,
    p0: float = 0.01,
    irrelevant: str = "zero",
    max_error_fraction: float = 0.5,
    response_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scales of the tokens of an *incorrect* output (paper Eq. 1, 2, 4).

    With ``r1 = p_judge / p_base`` and ``r2 = p_judge / p_std``, erroneous (saliency) tokens are
    those with ``r1 > r0``, ``r2 > r0`` and ``p_judge > p0``; their scale is
    ``2 * sigmoid(r1 - r0)``, in (1, 2), and they are trained away with unlikelihood. Tokens in the
    phrase of an erroneous token (``near_error``) get 0. The remaining ("irrelevant") tokens get:

    - ``irrelevant="zero"`` (the paper): 0;
    - ``irrelevant="reference"`` (the reference code): ``sqrt(p_std)``, trained with likelihood;
    - ``irrelevant="likelihood"``: 1, trained with likelihood (unlikelihood paired with likelihood,
      as in Welleck et al. 2019 and CUT);

    An output whose erroneous share exceeds ``max_error_fraction`` is an entirely wrong sample and is
    excluded from training (paper section 6.1): every one of its tokens gets 0, the erroneous ones too,
    under every rule. The reference code's threshold is 0.06, one flagged token in 17, which fires on
    nearly every short output; see ``docs/method.md``.

    Args:
        p_base, p_std, p_judge: ``(..., T)`` probabilities of the response tokens under each view.
        near_error: ``(..., T)`` bool phrase mask around erroneous tokens, or None.
        r0: ratio threshold. p0: minimum ``p_judge`` of an erroneous token (paper p0_incorrect).
        irrelevant: ``"zero"``, ``"reference"`` or ``"likelihood"``.
        max_error_fraction: the erroneous share above which the output is excluded (all scales 0);
            the share is taken along the last axis.
        response_mask: ``(..., T)`` bool, the real response tokens (padding excluded) for that share;
            None means every position is a response token.

    Returns:
        ``(scales, saliency)``: float scales and the bool erroneous-token mask, shape ``(..., T)``.
    """
    if irrelevant not in IRRELEVANT_RULES:
        raise ValueError(f"irrelevant must be one of {', '.join(IRRELEVANT_RULES)}, got {irrelevant!r}")
    p_base = p_base.detach().float().clamp(0.0, 1.0)
    p_std = p_std.detach().float().clamp(0.0, 1.0)
    p_judge = p_judge.detach().float().clamp(0.0, 1.0)
    r1 = p_judge / p_base.clamp(min=PROB_FLOOR)
    r2 = p_judge / p_std.clamp(min=PROB_FLOOR)
    erroneous = (r1 > r0) & (r2 > r0) & (p_judge > p0)
    if response_mask is not None:
        erroneous = erroneous & response_mask.to(torch.bool)
    scales = torch.where(erroneous, 2.0 * torch.sigmoid(r1 - r0), torch.zeros_like(r1))
    mask = torch.ones_like(erroneous) if response_mask is None else response_mask.to(torch.bool)
    kept = (error_share(erroneous, mask) <= max_error_fraction)[..., None]  # entirely wrong outputs: excluded
    if irrelevant != "zero":
        weight = p_std.sqrt() if irrelevant == "reference" else torch.ones_like(p_std)
        scales = torch.where(kept & mask & ~erroneous, weight, scales)
    scales = torch.where(kept, scales, torch.zeros_like(scales))
    if near_error is not None:
        near = near_error.to(torch.bool) & ~erroneous
        scales = torch.where(near, torch.zeros_like(scales), scales)
    return scales, erroneous


def cut_token_scales(
    p_base: torch.Tensor,
    p_judge: torch.Tensor,
    *,
    threshold: float = 1.1,
    weight_unlike: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CUT's token weights for an *incorrect* output (Xu et al. 2023) on the X_base view.

    Tokens whose probability rises under the judgment, ``p_judge / p_base > threshold``, are the
    mistakes: weight ``weight_unlike``, trained with unlikelihood. Every other token is trained with
    likelihood, weight 1 (CUT does not leave them out). CUT's second term, the likelihood of the
    output under the judgment prompt, is not a weight on X_base: see :func:`nlft.method.loss.cut_loss`.

    Args:
        p_base, p_judge: ``(...)`` probabilities of the response tokens.
        threshold: the ratio above which a token is a mistake (CUT uses about 1.1 to 1.2).
        weight_unlike: the weight of the unlikelihood tokens.

    Returns:
        ``(scales, selected)``: float weights and the bool selection mask, shape ``(...)``.
    """
    ratio = p_judge.detach().float() / p_base.detach().float().clamp(min=PROB_FLOOR)
    selected = ratio > threshold
    return torch.where(selected, torch.full_like(ratio, weight_unlike), torch.ones_like(ratio)), selected


class TokenScales(NamedTuple):
    """Per-token weights of a batch, all ``(B, T)``."""

    scales: torch.Tensor  # float, the S_t of the loss
    unlikelihood: torch.Tensor  # bool, trained with -log(1 - P)
    saliency: torch.Tensor  # bool, saliency tokens of correct outputs
    sub_saliency: torch.Tensor  # bool, phrase tokens of correct outputs
    erroneous: torch.Tensor  # bool, erroneous tokens of incorrect outputs


def batch_token_scales(
    p_base: torch.Tensor,
    p_std: torch.Tensor | None,
    p_judge: torch.Tensor | None,
    correct: torch.Tensor,
    response_mask: torch.Tensor,
    spans: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    loss_type: str = "nlft",
    params: ScaleParams | None = None,
    **settings: Any,
) -> TokenScales:
    """Scales of a mixed batch of correct and incorrect outputs.

    Args:
        p_base, p_std, p_judge: ``(B, T)`` probabilities of the response tokens under each view
            (``p_std``/``p_judge`` may be None where the loss type does not read them; rows that do
            not need a view may hold anything there).
        correct: ``(B,)`` bool, whether each output is correct.
        response_mask: ``(B, T)`` bool, real response tokens.
        spans: ``(lo, hi)`` ``(B, T)`` phrase spans (see :mod:`nlft.method.clustering`), or None for no
            phrase tokens.
        loss_type: ``"nlft"`` (paper), ``"cut"`` (CUT's weights on X_base, see
            :func:`cut_token_scales`; likelihood on correct outputs) or ``"nll"`` (scale 1 on every
            response token: plain supervised fine-tuning).
        params: the :class:`~nlft.method.params.ScaleParams` (None: the paper's defaults);
            ``unlikelihood_weight`` is a factor on the scale of every unlikelihood token (CUT's
            ``weight_unlike``; 1 is the paper).
        settings: single settings on top of ``params``, by their ScaleParams names
            (``p0_correct=0.9``; ``irrelevant`` is accepted for ``irrelevant_incorrect``).

    Returns:
        :class:`TokenScales`; every field is zero / False outside the response.
    """
    import dataclasses

    from nlft.method.clustering import spans_to_mask

    if "irrelevant" in settings:
        settings["irrelevant_incorrect"] = settings.pop("irrelevant")
    sp = dataclasses.replace(params or ScaleParams(), **settings) if settings else (params or ScaleParams())
    mask = response_mask.to(torch.bool)
    row_correct = correct.to(torch.bool)[:, None].expand_as(mask)
    false = torch.zeros_like(mask)
    if loss_type == "nll":
        return TokenScales(mask.float(), false, false, false, false)
    if loss_type == "cut":
        if p_judge is None:
            raise ValueError("loss_type='cut' needs p_judge")
        cut_scales, selected = cut_token_scales(p_base, p_judge, threshold=sp.cut_threshold,
                                                weight_unlike=sp.unlikelihood_weight)
        selected = selected & ~row_correct & mask
        scales = torch.where(row_correct, torch.ones_like(cut_scales), cut_scales) * mask
        return TokenScales(scales, selected, false, false, selected)
    if loss_type != "nlft":
        raise ValueError(f"loss_type must be 'nlft', 'cut' or 'nll', got {loss_type!r}")
    if p_std is None:
        raise ValueError("loss_type='nlft' needs p_std")
    saliency = (p_std.detach() > sp.p0_correct) & row_correct & mask
    sub = spans_to_mask(saliency, *spans) & mask if spans is not None else None
    c_scales, _ = correct_token_scales(p_std, sub, p0=sp.p0_correct, c1=sp.c1, c2=sp.c2, c3=sp.c3)
    if p_judge is None:  # a batch of correct outputs only
        i_scales, erroneous = torch.zeros_like(c_scales), false
    else:
        wrong_mask = mask & ~row_correct
        _, erroneous = incorrect_token_scales(
            p_base, p_std, p_judge, r0=sp.r0, p0=sp.p0_incorrect, response_mask=wrong_mask
        )
        near = spans_to_mask(erroneous, *spans) & wrong_mask if spans is not None else None
        i_scales, erroneous = incorrect_token_scales(
            p_base, p_std, p_judge, near, r0=sp.r0, p0=sp.p0_incorrect, irrelevant=sp.irrelevant_incorrect,
            max_error_fraction=sp.max_error_fraction, response_mask=wrong_mask,
        )
    if sp.unlikelihood_weight != 1.0:
        i_scales = torch.where(erroneous, sp.unlikelihood_weight * i_scales, i_scales)
    scales = torch.where(row_correct, c_scales, i_scales) * mask
    sub_mask = (sub if sub is not None else false) & row_correct
    return TokenScales(scales, erroneous & ~row_correct, saliency, sub_mask, erroneous & ~row_correct)


CLASS_KEYS = ("correct_outputs", "incorrect_outputs", "saliency", "sub_saliency", "irrelevant_correct", "erroneous",
              "near_error", "irrelevant_incorrect", "incorrect_without_flag", "incorrect_excluded",
              "incorrect_contributing_nothing")


def class_counts(ts: TokenScales, correct: torch.Tensor, response_mask: torch.Tensor,
                 spans: tuple[torch.Tensor, torch.Tensor] | None = None, *,
                 max_error_fraction: float = 0.5) -> dict[str, int]:
    """How many outputs and tokens of a batch fall in each NLFT class (the data's report before training).

    Args:
        ts: the batch's :class:`TokenScales` (``(B, T)``). correct: ``(B,)`` bool. response_mask: ``(B, T)`` bool.
        spans: the phrase spans the scales were computed with (near-error tokens are the erroneous tokens' phrase
            neighbours), or None.
        max_error_fraction: the share above which an incorrect output is excluded (:func:`incorrect_token_scales`).

    Returns:
        Counts over :data:`CLASS_KEYS`: outputs per kind; tokens per class (correct: saliency, sub-saliency,
        irrelevant; incorrect: erroneous, near-error, irrelevant); incorrect outputs with no erroneous token,
        excluded as entirely wrong, and contributing nothing at all (every scale 0).
    """
    from nlft.method.clustering import spans_to_mask

    mask = response_mask.to(torch.bool)
    ok = correct.to(torch.bool)
    wrong_rows = ~ok[:, None] & mask
    near = spans_to_mask(ts.erroneous, *spans) & wrong_rows if spans is not None else torch.zeros_like(mask)
    n_err = (ts.erroneous & wrong_rows).sum(-1)
    excluded = ~ok & (error_share(ts.erroneous & wrong_rows, mask) > max_error_fraction)
    nothing = ~ok & ((ts.scales * mask) == 0).all(-1)
    good_rows = ok[:, None] & mask
    return {
        "correct_outputs": int(ok.sum()), "incorrect_outputs": int((~ok).sum()),
        "saliency": int((ts.saliency & good_rows).sum()), "sub_saliency": int((ts.sub_saliency & good_rows).sum()),
        "irrelevant_correct": int((good_rows & ~ts.saliency & ~ts.sub_saliency).sum()),
        "erroneous": int(n_err.sum()), "near_error": int(near.sum()),
        "irrelevant_incorrect": int((wrong_rows & ~ts.erroneous & ~near).sum()),
        "incorrect_without_flag": int((~ok & (n_err == 0)).sum()), "incorrect_excluded": int(excluded.sum()),
        "incorrect_contributing_nothing": int(nothing.sum()),
    }
