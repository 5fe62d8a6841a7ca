"""The method's settings, declared once: what decides a token's scale, and how the loss is formed.

:class:`ScaleParams` holds every setting that decides a token's class and scale (paper Eq. 1-4,
CUT's selection, the phrase rule). :func:`nlft.method.scales.batch_token_scales` reads it, the
saliency page starts its controls from it, and :class:`nlft.train.config.NLFTConfig`,
``nlft train``'s options and ``nlft saliency``'s flags are built from its fields (name, default,
help). :class:`LossParams` holds the trainer's other NLFT settings (views, KL anchor, balance).

Standard library only, so that building the command line stays instant.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# What the irrelevant tokens of an incorrect output get: 0 (paper), sqrt(P_std) (reference code), 1.
IRRELEVANT_RULES = ("zero", "reference", "likelihood")
PHRASE_RULES = ("cosine", "word", "none")


def _p(default: Any, help: str, *, page: bool = False, choices: tuple[str, ...] | None = None) -> Any:
    """A setting: its default, its help, whether the saliency page has a control for it, its choices."""
    meta: dict[str, Any] = {"help": help, "page": page}
    if choices:
        meta["choices"] = choices
    return field(default=default, metadata=meta)


class _Settings:
    @classmethod
    def of(cls, settings: Any) -> Any:
        """These settings, read from any object with the same attributes (an NLFTConfig, training options)."""
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class ScaleParams(_Settings):
    """Every setting that decides a token's class and scale (defaults: the paper's)."""

    # --- correct outputs (paper Eq. 3) ----------------------------------------------------------
    p0_correct: float = _p(0.95, "Saliency threshold on P_std for correct outputs.", page=True)
    c1: float = _p(5.0, "Exponent of the saliency scale 1 + ((P-p0)/(1-p0))^c1.", page=True)
    c2: float = _p(0.3, "Exponent of the sub-saliency scale (P/p0)^c2 (c2 < c3).", page=True)
    c3: float = _p(0.6, "Exponent of the irrelevant-token scale (P/p0)^c3.", page=True)
    # --- incorrect outputs (paper Eq. 1, 2, 4) ---------------------------------------------------
    r0: float = _p(1.5, "Ratio threshold on P_judge/P_base and P_judge/P_std.", page=True)
    p0_incorrect: float = _p(0.01, "Minimum P_judge of an erroneous token.", page=True)
    irrelevant_incorrect: str = _p(
        "zero", "Scale of the irrelevant tokens of incorrect outputs: 'zero' (the paper), 'reference' (the reference "
                "code: sqrt(P_std) with likelihood) or 'likelihood' (1, with likelihood); an entirely wrong output "
                "(erroneous share above max_error_fraction) gets 0.", page=True, choices=IRRELEVANT_RULES)
    max_error_fraction: float = _p(
        0.5, "Erroneous-token share above which an output counts as entirely wrong and is excluded from training "
             "(every token 0; paper section 6.1; the reference code's rule uses 0.06).", page=True)
    unlikelihood_weight: float = _p(1.0, "Factor on the scale of every unlikelihood token (CUT: weight_unlike).")
    # --- phrase clustering -----------------------------------------------------------------------
    phrase_rule: str = _p(
        "cosine", "How sub-saliency / near-error phrases are grown: 'cosine' (hidden-state similarity to the saliency "
                  "token, X_base view), 'word' (tokenizer word boundaries) or 'none'.", page=True,
        choices=PHRASE_RULES)
    phrase_threshold: float = _p(0.6, "Minimum cosine similarity of a phrase token to its saliency token.")
    max_phrase_span: int = _p(8, "Most tokens a phrase reaches on each side.")
    # --- CUT -------------------------------------------------------------------------------------
    cut_threshold: float = _p(1.1, "CUT: tokens with P_judge/P_base above this get unlikelihood.", page=True)

    def check(self) -> ScaleParams:
        """Raise ValueError on a setting out of its range (the config checks; the scale functions take any)."""
        check_choices(self)
        if not 0.0 < self.p0_correct < 1.0:
            raise ValueError(f"p0_correct must be in (0, 1), got {self.p0_correct}")
        if not 0.0 <= self.p0_incorrect < 1.0:
            raise ValueError(f"p0_incorrect must be in [0, 1), got {self.p0_incorrect}")
        if self.c2 >= self.c3:
            raise ValueError(f"c2 must be smaller than c3 (sub-saliency weighs more than irrelevant), got "
                             f"c2={self.c2}, c3={self.c3}")
        if self.r0 <= 0:
            raise ValueError(f"r0 must be positive, got {self.r0}")
        if not -1.0 <= self.phrase_threshold <= 1.0:
            raise ValueError(f"phrase_threshold is a cosine similarity in [-1, 1], got {self.phrase_threshold}")
        if self.unlikelihood_weight < 0:
            raise ValueError(f"unlikelihood_weight must be >= 0, got {self.unlikelihood_weight}")
        return self


@dataclass(frozen=True)
class LossParams(_Settings):
    """The trainer's other NLFT settings: when the views are measured, the KL anchor, balance and extra terms."""

    view_probs: str = _p(
        "dynamic", "When P_std and P_judge are computed: 'dynamic' (every step, current model), 'cached' (once before "
                   "training, initial model) or 'per_epoch' (at the start of every epoch).",
        choices=("dynamic", "cached", "per_epoch"))
    view_batch_size: int | None = _p(
        None, "Rows per forward pass of the measurement views (None: all views of a batch at once).")
    share_prefix: bool = _p(
        True, "Run the token prefix that every prompt of a batch starts with (chat header, instruction, worked "
              "examples) once per forward, its keys and values shared by the rows, gradients included: the same loss "
              "and gradients as the full rows. Without a key/value cache (gradient checkpointing) the full rows run.")
    padding_free: bool = _p(
        True, "Pack the rows of every forward (base and measurement views) into as few rows as hold them, with "
               "position ids restarting per sequence and a block-causal mask, so that padding is not computed "
               "(attention implementations sdpa and eager; others run padded). Same loss and gradients.")
    error_reference: str = _p(
        "current", "P_base in the ratio P_judge/P_base that flags erroneous tokens: 'current' (the model being "
                   "trained, the paper) or 'initial' (the model before training, so pushing P_base down cannot keep "
                   "a token flagged and raise its own scale).", choices=("current", "initial"))
    kl_coef: float = _p(
        0.0, "Weight of a KL anchor to the initial model on the tokens of incorrect outputs that are not trained away "
             "(k3 estimator on the sampled tokens).")
    class_balance: bool = _p(
        False, "Weight tokens so that correct and incorrect outputs carry half of the loss each (shares counted over "
               "the training set).")
    nll_coef: float = _p(0.0, "Weight of an extra plain NLL term on correct outputs (the reference code adds one).")
    loss_multiplier: float = _p(1.0, "Constant factor on the loss (the reference code uses 10).")
    cut_normalisation: str = _p(
        "example", "How CUT's loss is averaged: 'example' (CUT's code: each output's token mean, then the mean over "
                   "the outputs of the accumulated batch) or 'token' (every response token of the accumulated batch "
                   "weighs the same, as NLFT's Eq. 5; earlier versions).", choices=("example", "token"))

    def check(self) -> LossParams:
        """Raise ValueError on a setting out of its range."""
        check_choices(self)
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")
        return self


def check_choices(settings: Any) -> None:
    """Every field with ``choices`` in its metadata holds one of them; ValueError naming the field otherwise."""
    for f in dataclasses.fields(settings):
        valid = f.metadata.get("choices")
        if valid and getattr(settings, f.name) not in valid:
            raise ValueError(f"{f.name}={getattr(settings, f.name)!r} is not valid; choose one of {', '.join(valid)}")


def settings_fields() -> tuple[dataclasses.Field, ...]:
    """The fields of :class:`LossParams` then :class:`ScaleParams`: every NLFT setting, once."""
    return (*dataclasses.fields(LossParams), *dataclasses.fields(ScaleParams))


# Every NLFT setting by name: the NLFT / CUT knobs of `nlft train`, written resolved into config.yaml.
NLFT_SETTINGS = tuple(f.name for f in settings_fields())
# The settings the saliency page has a control for (its starting values come from ScaleParams).
PAGE_PARAMS = tuple(f.name for f in dataclasses.fields(ScaleParams) if f.metadata.get("page"))
