"""The options of ``nlft train``, one dataclass: YAML keys and command-line flags (``lora_r`` <-> ``--lora-r``).

:class:`TrainOptions` is what :func:`nlft.train.recipe.run_training` takes. Its NLFT settings are
not declared here: one optional field per :class:`~nlft.method.params.ScaleParams` /
:class:`~nlft.method.params.LossParams` field, None meaning "NLFTConfig's default" (written resolved
into ``config.yaml``).

Why not TRL's ``TrlParser`` for the YAML-plus-flags merging: ``nlft train``'s words are its own and
must keep working (``--lr``, ``--epochs``, ``--batch-size``, ``--lora-targets`` as a comma list), and a
bad config file must fail with one line that names the file and the key (``c.yaml, field
'lora_rank': unknown option 'lora_rank' (did you mean 'lora_r'?)``); ``TrlParser`` turns unknown YAML
keys into command-line strings and raises a generic error, and its flags are the dataclass field
names. :func:`options_from` is the small merge that keeps those promises; TRL's ``ModelConfig`` /
``get_peft_config`` build the LoRA config (:func:`nlft.train.recipe.peft_setup`). The LoRA options
stay declared here because their defaults are the paper's (alpha 16; ModelConfig's is 32) and
``--lora-targets`` defaults to the model's MLP projections.

Standard library only: ``nlft --help`` builds every command's flags from here.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from nlft.method.params import settings_fields
from nlft.utils.files import DataError

METHODS = ("nlft", "sft", "dft", "cut", "reft", "sdft")


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class _Options:
    """The options of ``nlft train`` other than the NLFT settings (see :data:`TrainOptions`)."""

    method: str = _opt("nlft", "training method", choices=METHODS)
    preset: str | None = _opt(None, "NLFT settings by name: 'paper' (the published method, the defaults) or "
                                    "'robust' (safe on mostly-wrong data); explicit options override it")
    data: str | None = _opt(None, "NLFT data file (JSONL with question, reference, output, correct, judgment)")
    from_weights: str | None = _opt(
        None, "train NLFT on an `nlft weights` file (its scales and losses, measured once with the initial model) "
              "with TRL's SFTTrainer, instead of measuring the views here; replaces --data and the NLFT settings")
    out: str | None = _opt(None, "run directory")
    # model
    model: str = _opt("smollm2", "base model name or path")
    adapter: str | None = _opt(None, "PEFT adapter to start from (trained further)")
    dtype: str | None = _opt(None, "float32 (CPU default), bfloat16, float16 or auto")
    full: bool = _opt(False, "full fine-tuning instead of LoRA")
    lora_r: int = _opt(16, "LoRA rank")
    lora_alpha: int = _opt(16, "LoRA alpha")
    lora_dropout: float = _opt(0.05, "LoRA dropout")
    lora_targets: str | None = _opt(
        None, "comma-separated module names (default: gate_proj,up_proj,down_proj; c_fc,c_proj for GPT-2 style)")
    # optimisation (shared by every method)
    epochs: float = _opt(10.0, "epochs (paper: 10 for small sets; ReFT: RL epochs after the warm-up)")
    lr: float = _opt(5e-5, "AdamW learning rate")
    lr_scheduler: str = _opt("cosine", "learning-rate schedule")
    warmup: float = _opt(0.0, "learning-rate warm-up: steps (an integer), or a share of all steps in [0, 1)")
    weight_decay: float = _opt(0.0, "AdamW weight decay")
    batch_size: int = _opt(4, "batch size per device")
    grad_accum: int = _opt(1, "gradient accumulation steps")
    max_steps: int = _opt(-1, "stop after this many optimiser steps (-1: run all epochs)")
    seed: int = _opt(42, "random seed")
    bf16: bool = _opt(False, "bfloat16 mixed precision (GPU)")
    gradient_checkpointing: bool = _opt(False, "gradient checkpointing (less memory, slower)")
    logging_steps: int = _opt(1, "log every N steps")
    save_steps: int | None = _opt(None, "checkpoint every N steps (default: every epoch)")
    save_total_limit: int = _opt(2, "checkpoints kept")
    report_to: str = _opt("none", "logging backends: none, tensorboard, wandb, ... (comma-separated)")
    resume: bool = _opt(False, "continue from the last checkpoint in the run directory")
    no_progress: bool = _opt(False, "no progress bar (the logs still go to the run directory)")
    push_to_hub: str | None = _opt(None, "after training, upload the adapter (or model) with its model card to this "
                                         "Hugging Face repo (USER/NAME; token from `hf auth login` or $HF_TOKEN)")
    hub_private: bool = _opt(False, "create the --push-to-hub repo as private")
    # evaluation after each epoch
    eval_each_epoch: bool = _opt(False, "evaluate accuracy after every epoch (eval_history.jsonl)")
    eval_steps: int | None = _opt(None, "evaluate accuracy every N optimiser steps and after the last one, instead of "
                                        "after every epoch (implies the evaluation of --eval-each-epoch)")
    eval_data: str = _opt("gsm8k", "evaluation questions: gsm8k, a reasoning-gym task or a file")
    eval_data_dir: str | None = _opt(None, "GSM8K folder (default: $NLFT_GSM8K_DIR)")
    eval_answer_type: str = _opt("number", "answer type of an --eval-data file: number, math, choice, text[:options] "
                                           "(see nlft tasks)")
    eval_split: str = _opt("test", "evaluation split")
    eval_limit: int | None = _opt(None, "evaluate the first N questions only")
    eval_batch_size: int = _opt(16, "questions per generation batch")
    eval_max_new_tokens: int = _opt(512, "new tokens per answer")
    eval_temperature: float = _opt(0.0, "0 = greedy; the paper samples at 0.6")
    eval_prompt: str = _opt("train", "'train' (the training prompt, default), 'solve' (paper A.2; another task's "
                                     "own prompt), 'base' or a template file")
    eval_merged: bool = _opt(False, "generate with a merged copy of the adapter (faster; needs the model's "
                                    "memory once more)")
    # best-epoch selection and the drift monitor (NLFT, CUT)
    keep: str = _opt("last", "adapter saved at the end: 'last' epoch, or 'best' evaluation by validation accuracy "
                             "(needs --eval-each-epoch or --eval-steps; the --eval-* questions become the run's "
                             "validation set)",
                     choices=("last", "best"))
    best_metric: str = _opt("accuracy_strict", "metric_for_best_model of --keep best",
                            choices=("accuracy_strict", "accuracy_flexible"))
    drift_factor: float = _opt(1.5, "drift monitor (nlft, cut): fire when nlft/nll, the NLL of the training outputs, "
                                    "exceeds this many times its first-epoch mean")
    drift_action: str = _opt("restore", "when the drift monitor fires: restore (stop, and keep the last checkpoint "
                                        "saved before the drift, or the best one with --keep best), stop (stop, "
                                        "keep the weights reached), warn (one line, train on) or off",
                             choices=("restore", "stop", "warn", "off"))
    # SFT
    sft_data: str = _opt("outputs", "SFT (and ReFT warm-up) targets: 'outputs' (the correct outputs NLFT trains "
                                    "on: the fair baseline) or 'reference' (gold solutions: the paper's SFT)",
                         choices=("outputs", "reference"))
    # ReFT
    reft_algo: str = _opt("auto", "ReFT's RL algorithm: ppo (needs nlft[reft-ppo]), grpo, or auto: ppo where the "
                                  "installed TRL has it (trl <= 1.12), else grpo (what auto gives on trl > 1.12); "
                                  "the run's manifest records which", choices=("auto", "ppo", "grpo"))
    reft_warmup_epochs: float = _opt(2.0, "ReFT: SFT warm-up epochs before RL")
    reft_warmup_data: str = _opt("reference", "ReFT warm-up targets: 'reference' (gold chain-of-thought, as in the "
                                              "ReFT paper) or 'outputs' (the correct outputs)",
                                 choices=("outputs", "reference"))
    reft_kl: float = _opt(0.05, "ReFT: KL coefficient towards the warm-up model")
    reft_num_generations: int = _opt(4, "ReFT GRPO: completions sampled per question")
    reft_max_new_tokens: int = _opt(256, "ReFT: new tokens per sampled completion")
    reft_temperature: float = _opt(1.0, "ReFT: sampling temperature")
    # SDFT (TRL's self-distilled fine-tuning)
    sdft_num_generations: int = _opt(1, "SDFT: completions sampled per question at each step (batch_size x "
                                        "grad_accum must be a multiple)")
    sdft_max_new_tokens: int = _opt(64, "SDFT: new tokens per sampled completion")
    sdft_temperature: float = _opt(1.0, "SDFT: sampling temperature (TRL's default; TRL divides both models' "
                                        "logits by it in the loss too)")
    sdft_teacher: str = _opt("base", "SDFT teacher: 'base' (the initial model, the adapter switched off: the SDFT "
                                     "paper's), 'live' (the current model) or 'ema' (a moving average of it)",
                             choices=("base", "live", "ema"))
    sdft_context_template: str | None = _opt(None, "SDFT: file with the teacher's privileged context "
                                                   "({reference}); default: 'Here is a correct answer to this "
                                                   "question:' + the reference + 'Now write your own answer to "
                                                   "the question.'")
    # data and prompts
    max_length: int | None = _opt(None, "maximum prompt + output tokens (default: the model's, at most 4096)")
    truncation: str = _opt("error", "rows longer than max_length: 'error' or 'response' (cut the output)")
    use_chat_template: bool | None = _opt(None, "wrap prompts in the chat template (default: as the outputs were "
                                                "generated, else when the tokenizer has one)")
    base_template: str | None = _opt(None, "file with the training prompt ({question}); default: the prompt the "
                                           "data's outputs were generated with (their provenance), else the "
                                           "paper's solve instruction")

    @property
    def evaluates(self) -> bool:
        """Whether training measures accuracy as it goes (``--eval-each-epoch`` or ``--eval-steps``)."""
        return self.eval_each_epoch or bool(self.eval_steps)


def _knob(f: dataclasses.Field) -> tuple[str, Any, Any]:
    kind = eval(f.type, {}) if isinstance(f.type, str) else f.type  # "float", "int | None": builtins only
    return f.name, kind | None, field(default=None, metadata={"help": f.metadata["help"]})


# NLFT settings of ``nlft train`` (None: NLFTConfig's default), in the order of the method's declaration.
NLFT_KNOBS = tuple(f.name for f in settings_fields())
TrainOptions = dataclasses.make_dataclass(
    "TrainOptions", [_knob(f) for f in settings_fields()], bases=(_Options,),
    namespace={"__doc__": "Every option of ``nlft train``; YAML keys and command-line flags (``lora_r`` <-> "
                          "``--lora-r``). The NLFT settings come last (None: NLFTConfig's default).",
               "__module__": __name__})


def field_types() -> dict[str, tuple[type, bool]]:
    """``name -> (base type, optional)`` of every option."""
    hints = typing.get_type_hints(TrainOptions)
    out = {}
    for name, hint in hints.items():
        args = typing.get_args(hint)
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), hint) if isinstance(hint, types.UnionType) else hint
        out[name] = (base, optional)
    return out


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also yes/no, on/off, 1/0) as argparse reads a boolean option."""
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def coerce(name: str, value: Any) -> Any:
    """Convert ``value`` (from YAML or the command line) to the type of option ``name``; ValueError if it can't."""
    base, optional = field_types()[name]
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null") and optional):
        if optional:
            return None
        raise ValueError(f"option {name!r} cannot be null")
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return parse_bool(value)
            except argparse.ArgumentTypeError as err:
                raise ValueError(str(err)) from None
        raise ValueError(f"expected true or false, got {value!r}")
    if base is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"expected an integer, got {value!r}")
        return int(value)
    if base is float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if isinstance(value, (list, tuple)) and name in ("lora_targets", "report_to"):
        return ",".join(str(v) for v in value)
    if not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return str(value)


def options_from(config: str | None = None, flags: dict[str, Any] | None = None) -> Any:
    """:data:`TrainOptions` from defaults < the ``config`` YAML file < ``flags`` (already typed, by field name).

    Unknown or ill-typed YAML keys, and values outside an option's choices, raise DataError naming
    the file and the key; so do a missing ``data`` or ``out``.
    """
    from nlft.utils.files import read_yaml

    values: dict[str, Any] = {}
    names = [f.name for f in fields(TrainOptions)]
    if config:
        for key, value in read_yaml(config).items():
            name = str(key).replace("-", "_")
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise DataError(f"unknown option {key!r}{hint}", path=config, field=str(key))
            try:
                values[name] = coerce(name, value)
            except ValueError as err:
                raise DataError(str(err), path=config, field=str(key)) from None
    values.update({k: v for k, v in (flags or {}).items() if k in names})
    opts = TrainOptions(**values)
    for f in fields(TrainOptions):
        valid = f.metadata.get("choices")
        if valid and getattr(opts, f.name) not in valid:
            raise DataError(f"{getattr(opts, f.name)!r} is not valid; choose one of {', '.join(valid)}",
                            path=config, field=f.name)
    if opts.epochs <= 0 and opts.max_steps <= 0:  # the Trainer would train nothing and report the run done
        raise DataError(f"epochs must be more than 0, got {opts.epochs:g} (or give --max-steps)", path=config,
                        field="epochs")
    if not opts.data and not opts.from_weights:
        raise DataError("no training data: give --data FILE (or 'data:' in the config)", field="data")
    if not opts.out:
        raise DataError("no run directory: give --out DIR (or 'out:' in the config)", field="out")
    return opts
