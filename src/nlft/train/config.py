"""NLFTConfig: the training arguments of NLFT, with the paper's defaults, and the named presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from nlft.method.params import LossParams, ScaleParams, settings_fields
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
# The preset of `nlft train` and NLFTConfig.from_preset when none is named.
DEFAULT_PRESET = "paper"


def _settings_base() -> type:
    """A dataclass with one field per NLFT setting, taken from :class:`ScaleParams` and :class:`LossParams`.

    The settings are declared there once (name, type, default, help); NLFTConfig inherits them as
    plain fields, so ``NLFTConfig(p0_correct=0.9)``, YAML files and ``HfArgumentParser`` see them.
    """
    namespace: dict[str, Any] = {"__module__": __name__, "__annotations__": {}, "__doc__": "The NLFT settings."}
    for f in settings_fields():
        namespace["__annotations__"][f.name] = f.type
        namespace[f.name] = field(default=f.default, metadata={"help": f.metadata["help"]})
    return dataclass(type("NLFTSettings", (), namespace))


NLFTSettings = _settings_base()


@dataclass
class NLFTConfig(TrainingArguments, NLFTSettings):
    """Configuration of :class:`nlft.NLFTTrainer`.

    Every field of ``transformers.TrainingArguments`` is available, and every NLFT setting of
    :class:`~nlft.method.params.ScaleParams` (token scales, phrases, CUT) and
    :class:`~nlft.method.params.LossParams` (views, KL anchor, balance), as plain fields; the
    optimisation defaults below are the paper's GSM8K setting (AdamW, cosine schedule, learning
    rate 5e-5, batch size 4).
    """

    # --- which loss ------------------------------------------------------------------------------
    loss_type: str = field(
        default="nlft",
        metadata={"help": "'nlft' (the method), 'cut' (CUT as published: Xu et al. 2023) or 'nll' "
                          "(scale 1 on every response token: plain supervised fine-tuning)."},
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
    report_classes: bool = field(
        default=True,
        metadata={"help": "Before the first step, measure the token classes of the training data under the initial "
                          "model (one no-grad pass) and say them, warning when the incorrect outputs add nothing."},
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
        for name, valid in (("loss_type", ("nlft", "cut", "nll")), ("truncation", ("error", "response"))):
            if getattr(self, name) not in valid:
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid; choose one of {', '.join(valid)}")
        self.scale_params.check()
        self.loss_params.check()
        if self.loss_type == "cut" and self.nll_coef:
            raise ValueError("nll_coef adds a plain NLL term to the NLFT loss; loss_type='cut' has its own likelihood "
                             "terms: leave nll_coef at 0")
        if self.loss_type == "cut" and self.view_probs != "dynamic":
            raise ValueError("loss_type='cut' trains the output under the judgment prompt, so its view is computed "
                             "with gradients every step: view_probs must be 'dynamic'")
        if self.remove_unused_columns:
            raise ValueError("remove_unused_columns must be False for NLFTTrainer (it reads its own columns)")
        super().__post_init__()

    @property
    def scale_params(self) -> ScaleParams:
        """The settings that decide each token's scale, as :func:`nlft.method.scales.batch_token_scales` reads them."""
        return ScaleParams.of(self)

    @property
    def loss_params(self) -> LossParams:
        """The trainer's other NLFT settings (views, KL anchor, class balance, extra terms)."""
        return LossParams.of(self)

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
