"""NLFTConfig: the training arguments of NLFT, with the paper's defaults, and the named presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from nlft.method.scales import IRRELEVANT_RULES
from nlft.tasks.prompts import JUDGE_VIEW, STANDARD_VIEW

# Named settings of the NLFT loss. "paper" is the published method exactly (the NLFTConfig
# defaults). "robust" keeps the paper's token selection and scales, and adds what unlikelihood
# training needs on mostly-wrong data (docs/method.md, "NLFT on mostly-wrong data"): likelihood on
# the unflagged tokens of incorrect outputs, and erroneous tokens chosen against the initial model's
# P_base (which cuts the loop in which unlikelihood raises its own weights). Chosen on validation
# questions kept apart from the study's held-out set (docs/study.md, "Choosing the robust preset").
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"irrelevant_incorrect": "zero", "error_reference": "current", "kl_coef": 0.0,
              "class_balance": False, "unlikelihood_weight": 1.0},
    "robust": {"irrelevant_incorrect": "likelihood", "error_reference": "initial", "kl_coef": 0.0,
               "class_balance": False, "unlikelihood_weight": 1.0},
}


@dataclass
class NLFTConfig(TrainingArguments):
    """Configuration of :class:`nlft.NLFTTrainer`.

    Every field of ``transformers.TrainingArguments`` is available; the optimisation defaults below
    are the paper's GSM8K setting (AdamW, cosine schedule, learning rate 5e-5, batch size 4).
    """

    # --- which loss ------------------------------------------------------------------------------
    loss_type: str = field(
        default="nlft",
        metadata={"help": "'nlft' (the method), 'cut' (CUT as published: Xu et al. 2023) or 'nll' "
                          "(scale 1 on every response token: plain supervised fine-tuning)."},
    )
    # --- correct outputs (paper Eq. 3) ----------------------------------------------------------
    p0_correct: float = field(default=0.95, metadata={"help": "Saliency threshold on P_std for correct outputs."})
    c1: float = field(default=5.0, metadata={"help": "Exponent of the saliency scale 1 + ((P-p0)/(1-p0))^c1."})
    c2: float = field(default=0.3, metadata={"help": "Exponent of the sub-saliency scale (P/p0)^c2 (c2 < c3)."})
    c3: float = field(default=0.6, metadata={"help": "Exponent of the irrelevant-token scale (P/p0)^c3."})
    # --- incorrect outputs (paper Eq. 1, 2, 4) ---------------------------------------------------
    r0: float = field(default=1.5, metadata={"help": "Ratio threshold on P_judge/P_base and P_judge/P_std."})
    p0_incorrect: float = field(default=0.01, metadata={"help": "Minimum P_judge of an erroneous token."})
    irrelevant_incorrect: str = field(
        default="zero",
        metadata={"help": "Scale of the irrelevant tokens of incorrect outputs: 'zero' (the paper), 'reference' "
                          "(the reference code: sqrt(P_std) with likelihood) or 'likelihood' (1, with likelihood); "
                          "an entirely wrong output (erroneous share above max_error_fraction) gets 0."},
    )
    max_error_fraction: float = field(
        default=0.5,
        metadata={"help": "Erroneous-token share above which an output counts as entirely wrong and its irrelevant "
                          "tokens get 0 (not read for 'zero'; the reference code uses 0.06)."},
    )
    unlikelihood_weight: float = field(
        default=1.0, metadata={"help": "Factor on the scale of every unlikelihood token (CUT: weight_unlike)."}
    )
    error_reference: str = field(
        default="current",
        metadata={"help": "P_base in the ratio P_judge/P_base that flags erroneous tokens: 'current' (the model being "
                          "trained, the paper) or 'initial' (the model before training, so pushing P_base down "
                          "cannot keep a token flagged and raise its own scale)."},
    )
    kl_coef: float = field(
        default=0.0,
        metadata={"help": "Weight of a KL anchor to the initial model on the tokens of incorrect outputs that are "
                          "not trained away (k3 estimator on the sampled tokens)."},
    )
    class_balance: bool = field(
        default=False,
        metadata={"help": "Weight tokens so that correct and incorrect outputs carry half of the loss each "
                          "(shares counted over the training set)."},
    )
    # --- phrase clustering ---------------------------------------------------------------------
    phrase_rule: str = field(
        default="cosine",
        metadata={"help": "How sub-saliency / near-error phrases are grown: 'cosine' (hidden-state similarity to "
                          "the saliency token, X_base view), 'word' (tokenizer word boundaries) or 'none'."},
    )
    phrase_threshold: float = field(
        default=0.6, metadata={"help": "Minimum cosine similarity of a phrase token to its saliency token."}
    )
    max_phrase_span: int = field(default=8, metadata={"help": "Most tokens a phrase reaches on each side."})
    # --- CUT -------------------------------------------------------------------------------------
    cut_threshold: float = field(
        default=1.1, metadata={"help": "CUT: tokens with P_judge/P_base above this get unlikelihood."}
    )
    # --- view probabilities ------------------------------------------------------------------------
    view_probs: str = field(
        default="dynamic",
        metadata={"help": "When P_std and P_judge are computed: 'dynamic' (every step, current model), 'cached' "
                          "(once before training, initial model) or 'per_epoch' (at the start of every epoch)."},
    )
    view_batch_size: int | None = field(
        default=None,
        metadata={"help": "Rows per forward pass of the measurement views (None: all views of a batch at once)."},
    )
    # --- prompts -----------------------------------------------------------------------------------
    base_template: str | None = field(
        default=None,
        metadata={"help": "X_base prompt ({question}); None: the prompt the records were generated with (their "
                          "provenance), else the paper's solve instruction (appendix A.2)."},
    )
    standard_template: str = field(
        default=STANDARD_VIEW,
        metadata={"help": "X_standard: text appended to the question inside X_base's prompt ({reference}); a text "
                          "with {question} is a whole prompt of its own."},
    )
    judge_template: str = field(
        default=JUDGE_VIEW,
        metadata={"help": "X_judge: text appended to the question inside X_base's prompt ({judgment}); a text "
                          "with {question} is a whole prompt of its own."},
    )
    use_chat_template: bool | None = field(
        default=None,
        metadata={"help": "Wrap prompts with the tokenizer's chat template (None: when it has one)."},
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "Maximum prompt + output tokens of any view (None: the model's maximum, at most 4096)."},
    )
    truncation: str = field(
        default="error",
        metadata={"help": "Rows longer than max_length: 'error' (stop before training, naming the row) or "
                          "'response' (cut the end of the output)."},
    )
    # --- reference-code options ---------------------------------------------------------------------
    nll_coef: float = field(
        default=0.0,
        metadata={"help": "Weight of an extra plain NLL term on correct outputs (the reference code adds one)."},
    )
    loss_multiplier: float = field(
        default=1.0, metadata={"help": "Constant factor on the loss (the reference code uses 10)."}
    )

    # --- paper defaults for inherited fields ---------------------------------------------------------
    learning_rate: float = field(default=5e-5, metadata={"help": "AdamW learning rate (paper: 5e-5)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule (paper: cosine)."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Batch size per device (paper: 4)."})
    num_train_epochs: float = field(default=10.0, metadata={"help": "Epochs (paper: 10 for small sets)."})
    logging_steps: float = field(default=1, metadata={"help": "Log every N steps."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: the trainer reads its own columns."}
    )

    def __post_init__(self) -> None:
        choices = {
            "loss_type": ("nlft", "cut", "nll"),
            "irrelevant_incorrect": IRRELEVANT_RULES,
            "error_reference": ("current", "initial"),
            "phrase_rule": ("cosine", "word", "none"),
            "view_probs": ("dynamic", "cached", "per_epoch"),
            "truncation": ("error", "response"),
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid; choose one of {', '.join(valid)}")
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
        if self.loss_type == "cut" and self.view_probs != "dynamic":
            raise ValueError("loss_type='cut' trains the output under the judgment prompt, so its view is computed "
                             "with gradients every step: view_probs must be 'dynamic'")
        if self.kl_coef < 0 or self.unlikelihood_weight < 0:
            raise ValueError("kl_coef and unlikelihood_weight must be >= 0")
        if self.remove_unused_columns:
            raise ValueError("remove_unused_columns must be False for NLFTTrainer (it reads its own columns)")
        super().__post_init__()

    @classmethod
    def from_preset(cls, preset: str, **kwargs: Any) -> NLFTConfig:
        """An NLFTConfig with a named preset's settings (:data:`PRESETS`); keyword arguments override them."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[preset], **kwargs})

    @property
    def needs_initial_logps(self) -> bool:
        """Whether training reads log P_base of the initial model (KL anchor or 'initial' error reference)."""
        return self.loss_type == "nlft" and (self.kl_coef > 0 or self.error_reference == "initial")

    @property
    def needed_views(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Measurement views needed by ``(correct outputs, incorrect outputs)`` for this loss."""
        if self.loss_type == "nll":
            return (), ()
        if self.loss_type == "cut":
            return (), ("judge",)
        return ("standard",), ("standard", "judge")
