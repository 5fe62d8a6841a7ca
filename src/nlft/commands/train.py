"""Train with NLFT or a baseline (SFT, DFT, CUT, ReFT) on an NLFT data file, into a run directory.

All methods read the same data file, train under the prompt its outputs were generated with (their
provenance; ``--base-template FILE`` sets another), and share the LoRA and optimiser settings (the paper's: LoRA
r 16, alpha 16, dropout 0.05 on the MLP projections; AdamW, cosine schedule, lr 5e-5, batch 4).
Options come from ``--config FILE.yaml`` and the command line (the command line wins); the run
directory gets ``config.yaml`` (the resolved options, reusable with ``--config``), ``manifest.json``
(versions, seed, machine, per-epoch wall time and peak memory), ``log_history.jsonl``, checkpoints
and the final adapter (or model with ``--full``).

Examples::

    nlft train --method nlft --data data/nlft.jsonl --out runs/nlft
    nlft train --method nlft --preset robust --data data/nlft.jsonl --out runs/nlft-robust
    nlft train --method sft --sft-data outputs --data data/nlft.jsonl --out runs/sft --eval-each-epoch --eval-limit 50
    nlft train --config configs/cpu-quickstart.yaml --method reft --out runs/reft
    nlft train --config configs/cpu-quickstart.yaml --out runs/nlft --resume
    nlft train --method nlft --data data/nlft.jsonl --out runs/nlft --eval-each-epoch --eval-data chain_sum \
        --eval-split validation --keep best --drift-action stop
"""

from __future__ import annotations

import argparse
import difflib
import sys
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

METHODS = ("nlft", "sft", "dft", "cut", "reft")
NLFT_KNOBS = (
    "view_probs", "view_batch_size", "p0_correct", "c1", "c2", "c3", "r0", "p0_incorrect", "irrelevant_incorrect",
    "max_error_fraction", "unlikelihood_weight", "error_reference", "kl_coef", "class_balance", "phrase_rule",
    "phrase_threshold", "max_phrase_span", "cut_threshold", "nll_coef", "loss_multiplier",
)


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainOptions:
    """Every option of ``nlft train``; YAML keys and command-line flags (``lora_r`` <-> ``--lora-r``)."""

    method: str = _opt("nlft", "training method", choices=METHODS)
    preset: str | None = _opt(None, "NLFT settings by name: 'paper' (the published method, the defaults) or "
                                    "'robust' (safe on mostly-wrong data); explicit options override it")
    data: str | None = _opt(None, "NLFT data file (JSONL with question, reference, output, correct, judgment)")
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
    eval_data: str = _opt("gsm8k", "evaluation questions: gsm8k, a reasoning-gym task or a file")
    eval_data_dir: str | None = _opt(None, "GSM8K folder (default: $NLFT_GSM8K_DIR)")
    eval_split: str = _opt("test", "evaluation split")
    eval_limit: int | None = _opt(None, "evaluate the first N questions only")
    eval_batch_size: int = _opt(16, "questions per generation batch")
    eval_max_new_tokens: int = _opt(512, "new tokens per answer")
    eval_temperature: float = _opt(0.0, "0 = greedy; the paper samples at 0.6")
    eval_prompt: str = _opt("train", "'train' (the training prompt, default), 'solve' (paper A.2), 'base' or a "
                                     "template file")
    eval_merged: bool = _opt(False, "generate with a merged copy of the adapter (faster; needs the model's "
                                    "memory once more)")
    # best-epoch selection and the drift monitor (NLFT, CUT)
    keep: str = _opt("last", "adapter saved at the end: 'last' epoch, or 'best' epoch by validation accuracy "
                             "(needs --eval-each-epoch; the --eval-* questions become the run's validation set)",
                     choices=("last", "best"))
    best_metric: str = _opt("accuracy_strict", "metric_for_best_model of --keep best",
                            choices=("accuracy_strict", "accuracy_flexible"))
    drift_factor: float = _opt(1.5, "drift monitor (nlft, cut): fire when nlft/nll, the NLL of the training outputs, "
                                    "exceeds this many times its first-epoch mean")
    drift_action: str = _opt("warn", "when the drift monitor fires: warn (one line), stop (end the run cleanly) or "
                                     "off", choices=("warn", "stop", "off"))
    # SFT
    sft_data: str = _opt("outputs", "SFT (and ReFT warm-up) targets: 'outputs' (the correct outputs NLFT trains "
                                    "on: the fair baseline) or 'reference' (gold solutions: the paper's SFT)",
                         choices=("outputs", "reference"))
    # ReFT
    reft_algo: str = _opt("auto", "ReFT's RL algorithm: ppo (needs nlft[reft-ppo]), grpo, or auto (ppo when "
                                  "installed)", choices=("auto", "ppo", "grpo"))
    reft_warmup_epochs: float = _opt(2.0, "ReFT: SFT warm-up epochs before RL")
    reft_warmup_data: str = _opt("reference", "ReFT warm-up targets: 'reference' (gold chain-of-thought, as in the "
                                              "ReFT paper) or 'outputs' (the correct outputs)",
                                 choices=("outputs", "reference"))
    reft_kl: float = _opt(0.05, "ReFT: KL coefficient towards the warm-up model")
    reft_num_generations: int = _opt(4, "ReFT GRPO: completions sampled per question")
    reft_max_new_tokens: int = _opt(256, "ReFT: new tokens per sampled completion")
    reft_temperature: float = _opt(1.0, "ReFT: sampling temperature")
    # data and prompts
    max_length: int | None = _opt(None, "maximum prompt + output tokens (default: the model's, at most 4096)")
    truncation: str = _opt("error", "rows longer than max_length: 'error' or 'response' (cut the output)")
    use_chat_template: bool | None = _opt(None, "wrap prompts in the chat template (default: as the outputs were "
                                                "generated, else when the tokenizer has one)")
    base_template: str | None = _opt(None, "file with the training prompt ({question}); default: the prompt the "
                                           "data's outputs were generated with (their provenance), else the "
                                           "paper's solve instruction")
    # NLFT / CUT knobs (None: NLFTConfig's default, written resolved into config.yaml)
    view_probs: str | None = _opt(None, "when P_std/P_judge are computed: dynamic, cached or per_epoch")
    view_batch_size: int | None = _opt(None, "rows per forward pass of the measurement views")
    p0_correct: float | None = _opt(None, "saliency threshold on P_std (correct outputs)")
    c1: float | None = _opt(None, "saliency exponent")
    c2: float | None = _opt(None, "sub-saliency exponent")
    c3: float | None = _opt(None, "irrelevant-token exponent")
    r0: float | None = _opt(None, "ratio threshold of erroneous tokens")
    p0_incorrect: float | None = _opt(None, "minimum P_judge of an erroneous token")
    irrelevant_incorrect: str | None = _opt(None, "irrelevant tokens of incorrect outputs: zero, reference or "
                                                  "likelihood")
    max_error_fraction: float | None = _opt(None, "erroneous share above which an output is entirely wrong (its "
                                                  "irrelevant tokens get 0)")
    unlikelihood_weight: float | None = _opt(None, "factor on every unlikelihood token (CUT: weight_unlike)")
    error_reference: str | None = _opt(None, "P_base of the erroneous-token ratio: current (paper) or initial")
    kl_coef: float | None = _opt(None, "KL anchor to the initial model on incorrect outputs (0: off)")
    class_balance: bool | None = _opt(None, "correct and incorrect outputs carry half of the loss each")
    phrase_rule: str | None = _opt(None, "phrase clustering: cosine, word or none")
    phrase_threshold: float | None = _opt(None, "cosine similarity threshold of phrases")
    max_phrase_span: int | None = _opt(None, "most tokens a phrase reaches on each side")
    cut_threshold: float | None = _opt(None, "CUT: P_judge/P_base threshold for unlikelihood")
    nll_coef: float | None = _opt(None, "weight of an extra plain NLL term")
    loss_multiplier: float | None = _opt(None, "constant factor on the loss")


def _field_types() -> dict[str, tuple[type, bool]]:
    """``name -> (base type, optional)`` of every option."""
    hints = typing.get_type_hints(TrainOptions)
    out = {}
    for name, hint in hints.items():
        args = typing.get_args(hint)
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), hint) if isinstance(hint, types.UnionType) else hint
        out[name] = (base, optional)
    return out


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def coerce(name: str, value: Any) -> Any:
    """Convert ``value`` (from YAML or the command line) to the type of option ``name``; ValueError if it can't."""
    base, optional = _field_types()[name]
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null") and optional):
        if optional:
            return None
        raise ValueError(f"option {name!r} cannot be null")
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return _parse_bool(value)
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML file of options (flags given here override it)")
    types_ = _field_types()
    for f in fields(TrainOptions):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        base, optional = types_[f.name]
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        if base is bool and not optional:
            kwargs["action"] = "store_true"
            help_text += " (flag)"
        else:
            kwargs["type"] = {bool: _parse_bool, int: int, float: float}.get(base, str)
            kwargs["metavar"] = f.name.upper()
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
            default = f.default if f.default is not MISSING else None
            help_text += f" (default: {default})"
        parser.add_argument(flag, help=help_text, **kwargs)


def resolve_options(args: argparse.Namespace) -> TrainOptions:
    """Defaults < ``--config`` YAML < command-line flags. Unknown or ill-typed YAML keys raise DataError."""
    from nlft.train.rundir import read_config
    from nlft.utils.files import DataError

    values: dict[str, Any] = {}
    names = [f.name for f in fields(TrainOptions)]
    if getattr(args, "config", None):
        for key, value in read_config(args.config).items():
            name = str(key).replace("-", "_")
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise DataError(f"unknown option {key!r}{hint}", path=args.config, field=str(key))
            try:
                values[name] = coerce(name, value)
            except ValueError as err:
                raise DataError(str(err), path=args.config, field=str(key)) from None
    for name in names:
        if name in vars(args):
            values[name] = getattr(args, name)
    opts = TrainOptions(**values)
    for f in fields(TrainOptions):
        valid = f.metadata.get("choices")
        if valid and getattr(opts, f.name) not in valid:
            raise DataError(f"{getattr(opts, f.name)!r} is not valid; choose one of {', '.join(valid)}",
                            path=getattr(args, "config", None), field=f.name)
    if not opts.data:
        raise DataError("no training data: give --data FILE (or 'data:' in the config)", field="data")
    if not opts.out:
        raise DataError("no run directory: give --out DIR (or 'out:' in the config)", field="out")
    return opts


# ---- building blocks ------------------------------------------------------------------------------------


def lora_targets(model: Any, targets: str | None) -> list[str]:
    """The LoRA target modules: the given ones, or the MLP projections of Llama-style / GPT-2-style models."""
    if targets:
        return [t.strip() for t in targets.split(",") if t.strip()]
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if {"gate_proj", "up_proj", "down_proj"} <= names:
        return ["gate_proj", "up_proj", "down_proj"]
    if {"c_fc", "c_proj"} <= names:
        return ["c_fc", "c_proj"]
    raise ValueError("cannot guess the MLP projections of this model: give --lora-targets (module names)")


def _peft_setup(model: Any, opts: TrainOptions) -> tuple[Any, Any]:
    """``(model, peft_config)``: a trainable PeftModel from ``--adapter``, or a fresh LoRA config (None if --full)."""
    if opts.adapter:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, opts.adapter, is_trainable=True), None
    if opts.full:
        return model, None
    from peft import LoraConfig

    return model, LoraConfig(r=opts.lora_r, lora_alpha=opts.lora_alpha, lora_dropout=opts.lora_dropout,
                             target_modules=lora_targets(model, opts.lora_targets), task_type="CAUSAL_LM",
                             bias="none")


def common_args(opts: TrainOptions, output_dir: str | Path, *, epochs: float | None = None) -> dict[str, Any]:
    """TrainingArguments shared by every method (the same optimiser, schedule, batch and checkpointing)."""
    return {
        "output_dir": str(output_dir),
        "num_train_epochs": opts.epochs if epochs is None else epochs,
        "learning_rate": opts.lr,
        "lr_scheduler_type": opts.lr_scheduler,
        "warmup_steps": int(opts.warmup) if opts.warmup >= 1 else opts.warmup,
        "weight_decay": opts.weight_decay,
        "optim": "adamw_torch",
        "per_device_train_batch_size": opts.batch_size,
        "gradient_accumulation_steps": opts.grad_accum,
        "max_steps": opts.max_steps,
        "seed": opts.seed,
        "data_seed": opts.seed,
        "bf16": opts.bf16,
        _checkpointing_arg(): opts.gradient_checkpointing,
        "dataloader_pin_memory": _cuda(),
        "logging_steps": opts.logging_steps,
        "save_strategy": "steps" if opts.save_steps else "epoch",
        "save_steps": opts.save_steps or 500,
        "save_total_limit": opts.save_total_limit,
        "report_to": [r for r in opts.report_to.split(",") if r and r != "none"] or "none",
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
        **({"metric_for_best_model": opts.best_metric, "greater_is_better": True} if opts.keep == "best" else {}),
    }


def _checkpointing_arg() -> str:
    """``activation_checkpointing`` (the current name), or ``gradient_checkpointing`` on older transformers."""
    from transformers import TrainingArguments

    return ("activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
            else "gradient_checkpointing")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _load_records(path: str) -> list[dict[str, Any]]:
    from nlft.utils.files import DataError, read_jsonl

    if not Path(path).is_file():
        raise DataError("training data file not found", path=path)
    rows = read_jsonl(path)
    if not rows:
        raise DataError("no rows", path=path)
    return rows


def _nlft_records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from nlft.train.views import REQUIRED_FIELDS

    # only the fields the trainer reads: extra columns (provenance, ...) need not share one Arrow schema
    return [{k: r.get(k, None) for k in REQUIRED_FIELDS} if all(k in r for k in REQUIRED_FIELDS) else r
            for r in rows]


def _save_final(trainer: Any, tokenizer: Any, run_dir: Path, opts: TrainOptions, base_model: str) -> dict[str, Any]:
    model = trainer.accelerator.unwrap_model(trainer.model) if hasattr(trainer, "accelerator") else trainer.model
    model = getattr(model, "policy", model)  # TRL's PPO wraps the policy with the value model
    from nlft.train.rundir import portable_path

    # Paths relative to the run directory (or absolute): the run can move and be read from anywhere.
    if hasattr(model, "peft_config"):
        target = run_dir / "adapter"
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
        return {"model": portable_path(base_model, run_dir), "adapter": "adapter"}
    target = run_dir / "model"
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return {"model": "model", "adapter": None}


# ---- the command ----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    opts = resolve_options(args)
    return train(opts)


def train(opts: TrainOptions) -> int:
    """Run one training of ``opts.method`` into ``opts.out``; returns 0 (the exit code)."""
    import torch

    from nlft.train.callbacks import EpochEvalCallback
    from nlft.train.hub import data_summary, push_to_hub, write_model_card
    from nlft.train.rundir import RunRecorder, last_checkpoint
    from nlft.utils.files import DataError, lock_dir
    from nlft.utils.models import load_model, load_tokenizer, resolve_model_path

    run_dir = Path(opts.out)
    checkpoint = last_checkpoint(run_dir) if run_dir.is_dir() else None
    if opts.resume and checkpoint is None and not (run_dir / "warmup" / "model").is_dir():
        print(f"nlft train: no checkpoint in {run_dir}; starting from scratch", file=sys.stderr)
    if not opts.resume and (checkpoint is not None or (run_dir / "manifest.json").exists()):
        raise DataError("the run directory already holds a run: add --resume to continue it, or choose another --out",
                        path=run_dir)
    if opts.keep == "best":
        from nlft.train.selection import check_validation_source

        if not opts.eval_each_epoch:
            raise DataError("--keep best needs --eval-each-epoch (the per-epoch accuracy it chooses by)", field="keep")
        if opts.method == "reft":
            raise DataError("--keep best is for nlft, cut and sft runs", field="keep")
        check_validation_source(opts.eval_data, opts.eval_split)
    if opts.resume and (stopped := _stopped_by_monitor(run_dir)) and opts.drift_action == "stop":
        print(f"nlft train: {run_dir} was stopped by the drift monitor at epoch {stopped['epoch']:.2f}, step "
              f"{stopped['step']} ({stopped['reason']}); its weights: {stopped.get('final')}. To train on "
              "regardless: --resume --drift-action warn", file=sys.stderr)
        return 0
    records = _load_records(opts.data)
    if opts.method in ("nlft", "cut"):
        from nlft.train.views import validate_records

        # Here, where the file is known, so that a bad row is reported by file name.
        validate_records(records, source=opts.data, needs_judgment=True)
    template, chat = training_prompt(records, opts)
    if opts.use_chat_template is None and chat is False:
        opts = TrainOptions(**{**asdict(opts), "use_chat_template": False})
    lock_dir(run_dir)  # created only now that the checks passed; a second process is refused
    tokenizer = load_tokenizer(opts.model)
    base_model = resolve_model_path(opts.model)

    from transformers import set_seed

    set_seed(opts.seed)
    resolved = {**asdict(opts), "resume": False, "no_progress": False}  # the run, not how it was last started
    callbacks: list[Any] = []
    recorder = RunRecorder(run_dir, method=opts.method, seed=opts.seed)
    recorder.manifest["prompt"] = {"template": template, "chat_template": opts.use_chat_template}
    callbacks.append(recorder)
    recorder.manifest["data"] = data_summary(opts.data, records)
    if opts.eval_each_epoch:
        from nlft.commands.evaluate import resolve_template
        from nlft.tasks.sources import load_questions

        eval_rows = load_questions(opts.eval_data, data_dir=opts.eval_data_dir, split=opts.eval_split,
                                   limit=opts.eval_limit, seed=opts.seed)
        epoch_eval = EpochEvalCallback
        if opts.keep == "best":
            from nlft.train.selection import BestEpochCallback, write_validation

            epoch_eval = BestEpochCallback
            split = None if Path(opts.eval_data).is_file() else opts.eval_split
            write_validation(run_dir, eval_rows, source=opts.eval_data + (f" (split {split})" if split else ""))
            recorder.manifest["validation"] = {"file": "validation.jsonl", "data": opts.eval_data, "split": split,
                                               "n": len(eval_rows)}
        callbacks.append(epoch_eval(
            run_dir, tokenizer, eval_rows, batch_size=opts.eval_batch_size, max_new_tokens=opts.eval_max_new_tokens,
            temperature=opts.eval_temperature, seed=opts.seed,
            template=template if opts.eval_prompt == "train" else resolve_template(opts.eval_prompt),
            use_chat_template=opts.use_chat_template, source=opts.eval_data, merge_adapter=opts.eval_merged))
    device_map = "cuda" if torch.cuda.is_available() else None

    def fresh_model(path: str) -> Any:
        return load_model(path, dtype=opts.dtype, device_map=device_map) if device_map else load_model(
            path, dtype=opts.dtype)

    method = opts.method
    if method in ("nlft", "cut"):
        from nlft.train.config import NLFTConfig
        from nlft.train.monitor import DriftMonitor
        from nlft.train.trainer import NLFTTrainer

        monitor = DriftMonitor(opts.drift_factor, opts.drift_action)
        callbacks.append(monitor)
        knobs = {k: getattr(opts, k) for k in NLFT_KNOBS if getattr(opts, k) is not None}
        cfg = NLFTConfig.from_preset(opts.preset or "paper", **common_args(opts, run_dir), loss_type=method,
                                     max_length=opts.max_length, truncation=opts.truncation,
                                     use_chat_template=opts.use_chat_template, base_template=template, **knobs)
        resolved.update({k: getattr(cfg, k) for k in NLFT_KNOBS})
        model, peft_config = _peft_setup(fresh_model(opts.model), opts)
        trainer = NLFTTrainer(model=model, args=cfg, train_dataset=_nlft_records(records), processing_class=tokenizer,
                              peft_config=peft_config, callbacks=callbacks)
        final = _run_trainer(trainer, tokenizer, run_dir, opts, base_model, resolved, recorder, checkpoint)
    elif method in ("sft", "dft"):
        trainer = _sft_trainer(opts, fresh_model(opts.model), tokenizer, records, run_dir, callbacks, opts.epochs,
                               opts.sft_data, template, loss_type="dft" if method == "dft" else "nll")
        final = _run_trainer(trainer, tokenizer, run_dir, opts, base_model, resolved, recorder, checkpoint)
    elif method == "reft":
        final = _train_reft(opts, tokenizer, records, run_dir, callbacks, recorder, resolved, fresh_model, checkpoint,
                            template)
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    recorder.manifest["final"] = final
    if method in ("nlft", "cut"):
        _record_monitor(recorder, monitor)
    if opts.keep == "best":
        _record_kept(recorder, trainer, run_dir, opts)
    elif recorder.manifest["epochs"]:
        recorder.manifest["kept"] = {"keep": "last", "epoch": recorder.manifest["epochs"][-1]["epoch"]}
    recorder.write_manifest()
    _plots(run_dir)
    card = write_model_card(run_dir)
    if opts.push_to_hub and card is not None:
        push_to_hub(card.parent, opts.push_to_hub, private=opts.hub_private or None)
        print(f"nlft train: uploaded {card.parent} to https://huggingface.co/{opts.push_to_hub}", file=sys.stderr)
    weights = run_dir / (final["adapter"] or final["model"])
    print(f"nlft train: {method} done -> {run_dir} (weights and model card: {weights})", file=sys.stderr)
    return 0


def training_prompt(records: list[dict[str, Any]], opts: TrainOptions) -> tuple[str, bool | None]:
    """``(template, chat_template)`` every method trains under: ``--base-template``, else the records' own.

    The records' prompt is the one their outputs were generated with (provenance); files that do
    not say get the paper's solve instruction (appendix A.2), the prompt evaluation uses by default.
    """
    from nlft.tasks.prompts import SOLVE_TEMPLATE
    from nlft.train.views import generation_prompt
    from nlft.utils.files import DataError

    if opts.base_template:
        path = Path(opts.base_template)
        if not path.is_file():
            raise DataError("prompt template file not found", path=path, field="base_template")
        text = path.read_text(encoding="utf-8")
        if "{question}" not in text:
            raise DataError("the prompt template must contain {question}", path=path, field="base_template")
        return text, None
    found, chat = generation_prompt(records, source=opts.data or "data")
    return found or SOLVE_TEMPLATE, chat


def _sft_trainer(opts: TrainOptions, model: Any, tokenizer: Any, records: list[dict[str, Any]], out: Path,
                 callbacks: list[Any], epochs: float, data_mode: str, template: str, loss_type: str = "nll") -> Any:
    """TRL's SFTTrainer (``loss_type="dft"``: Dynamic Fine-Tuning, tokens weighted by their detached probability)."""
    from trl import SFTConfig

    from nlft.train.baselines import make_sft_trainer

    cfg = SFTConfig(**common_args(opts, out, epochs=epochs), max_length=opts.max_length, packing=False,
                    completion_only_loss=True, loss_type=loss_type)
    model, peft_config = _peft_setup(model, opts)
    return make_sft_trainer(model, tokenizer, records, cfg, mode=data_mode, peft_config=peft_config,
                            callbacks=callbacks, base_template=template,
                            use_chat_template=opts.use_chat_template, source=opts.data)


def _run_trainer(trainer: Any, tokenizer: Any, run_dir: Path, opts: TrainOptions, base_model: str,
                 resolved: dict[str, Any], recorder: Any, checkpoint: str | None) -> dict[str, Any]:
    from nlft.train.progress import use_progress_line
    from nlft.train.rundir import write_config

    write_config(run_dir, resolved)
    recorder.manifest["trainer_args"] = trainer.args.to_dict()
    use_progress_line(trainer, opts.method, progress=not opts.no_progress)
    result = trainer.train(resume_from_checkpoint=checkpoint if opts.resume else None)
    recorder.add_metrics({f"train/{k}": v for k, v in result.metrics.items()})
    if opts.keep == "best":
        from nlft.train.selection import load_best

        load_best(trainer)
    return _save_final(trainer, tokenizer, run_dir, opts, base_model)


def _stopped_by_monitor(run_dir: Path) -> dict[str, Any] | None:
    """The manifest's ``stopped`` entry (with the run's ``final`` weights) when the drift monitor ended the run."""
    import json

    path = run_dir / "manifest.json"
    if not path.exists():
        return None
    manifest = json.loads(path.read_text(encoding="utf-8"))
    stopped = manifest.get("stopped")
    return {**stopped, "final": manifest.get("final")} if stopped and stopped.get("by") == "drift monitor" else None


def _record_monitor(recorder: Any, monitor: Any) -> None:
    """The drift monitor's findings into the manifest; ``stopped`` (by, reason, step, epoch) when it ended the run."""
    recorder.manifest["drift_monitor"] = monitor.summary()
    recorder.manifest.pop("stopped", None)
    if monitor.stopped:
        report = monitor.report
        recorder.manifest["stopped"] = {"by": "drift monitor", "reason": report.message(), "step": report.step,
                                        "epoch": report.epoch}
        print(f"nlft train: stopped by the drift monitor at epoch {report.epoch:.2f} (step {report.step})",
              file=sys.stderr)


def _record_kept(recorder: Any, trainer: Any, run_dir: Path, opts: TrainOptions) -> None:
    """Which epoch ``--keep best`` kept (epoch, step, metric, value, n) into the manifest, and say so."""
    from nlft.train.selection import announce, kept_epoch, last_eval

    kept = kept_epoch(run_dir, trainer.state.best_global_step, opts.best_metric)
    recorder.manifest["kept"] = {"keep": "best", **(kept or {"epoch": None})}
    if kept is not None:
        print(f"nlft train: {announce(kept, last_eval(run_dir))}", file=sys.stderr)


def _train_reft(opts: TrainOptions, tokenizer: Any, records: list[dict[str, Any]], run_dir: Path,
                callbacks: list[Any], recorder: Any, resolved: dict[str, Any], fresh_model: Any,
                checkpoint: str | None, template: str) -> dict[str, Any]:
    """ReFT: SFT warm-up (merged into the weights, saved under warmup/model), then PPO or GRPO with a new LoRA."""
    from nlft.train.baselines import make_grpo_trainer, make_ppo_trainer, ppo_available
    from nlft.train.progress import use_progress_line
    from nlft.train.rundir import write_config

    algo = opts.reft_algo
    if algo == "auto":
        algo = "ppo" if ppo_available() else "grpo"
    resolved["reft_algo"] = algo
    write_config(run_dir, resolved)
    warm_dir = run_dir / "warmup"
    warm_model = warm_dir / "model"
    if not (warm_model / "config.json").exists():
        recorder.phase = "warmup"
        trainer = _sft_trainer(opts, fresh_model(opts.model), tokenizer, records, warm_dir, [recorder],
                               opts.reft_warmup_epochs, opts.reft_warmup_data, template)
        recorder.manifest["warmup_trainer_args"] = trainer.args.to_dict()
        use_progress_line(trainer, "reft warm-up", progress=not opts.no_progress)
        warm_ckpt = None
        if opts.resume:
            from nlft.train.rundir import last_checkpoint

            warm_ckpt = last_checkpoint(warm_dir)
        trainer.train(resume_from_checkpoint=warm_ckpt)
        model = trainer.accelerator.unwrap_model(trainer.model)
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        model.save_pretrained(warm_model)
        tokenizer.save_pretrained(warm_model)
        checkpoint = None  # RL starts now; checkpoints found earlier were the warm-up's
    recorder.phase = "rl"
    rl_opts = TrainOptions(**{**asdict(opts), "adapter": None})
    model, peft_config = _peft_setup(fresh_model(str(warm_model)), rl_opts)
    common = common_args(opts, run_dir)
    if algo == "grpo":
        from trl import GRPOConfig

        per_step = opts.batch_size * opts.grad_accum
        if per_step % opts.reft_num_generations:
            raise ValueError(f"ReFT GRPO: batch_size x grad_accum ({per_step}) must be a multiple of "
                             f"reft_num_generations ({opts.reft_num_generations})")
        cfg = GRPOConfig(**common, beta=opts.reft_kl, num_generations=opts.reft_num_generations,
                         max_completion_length=opts.reft_max_new_tokens, temperature=opts.reft_temperature,
                         generation_batch_size=per_step)
        trainer = make_grpo_trainer(model, tokenizer, records, cfg, peft_config=peft_config, callbacks=callbacks,
                                    base_template=template, use_chat_template=opts.use_chat_template,
                                    source=opts.data)
    elif algo == "ppo":
        from transformers import AutoModelForSequenceClassification
        from trl.experimental.ppo import PPOConfig

        ppo_common = {k: v for k, v in common.items() if k not in ("max_steps",)}
        cfg = PPOConfig(**ppo_common, kl_coef=opts.reft_kl, response_length=opts.reft_max_new_tokens,
                        temperature=opts.reft_temperature, stop_token="eos")
        if opts.max_steps > 0:
            cfg.total_episodes = opts.max_steps * opts.batch_size * opts.grad_accum
        value_model = AutoModelForSequenceClassification.from_pretrained(str(warm_model), num_labels=1)
        trainer = make_ppo_trainer(model, tokenizer, records, cfg, value_model=value_model, peft_config=peft_config,
                                   callbacks=callbacks, base_template=template,
                                   use_chat_template=opts.use_chat_template, source=opts.data)
    else:
        raise ValueError(f"unknown ReFT algorithm {algo!r}; choose ppo or grpo")
    recorder.manifest["trainer_args"] = trainer.args.to_dict()
    use_progress_line(trainer, f"reft {algo}", progress=not opts.no_progress)
    if algo == "ppo":
        trainer.train()  # TRL's PPO loop has no resume_from_checkpoint
    else:
        result = trainer.train(resume_from_checkpoint=checkpoint if opts.resume else None)
        recorder.add_metrics({f"train/{k}": v for k, v in result.metrics.items()})
    return _save_final(trainer, tokenizer, run_dir, opts, str(warm_model))


def _plots(run_dir: Path) -> None:
    try:
        from nlft.report.plots import plot_run
    except ImportError:
        return
    try:
        paths = plot_run(run_dir)
        print(f"nlft train: plots {', '.join(str(p) for p in paths)}", file=sys.stderr)
    except Exception as err:  # a plot must never lose a finished training
        print(f"nlft train: plotting failed: {err}", file=sys.stderr)
