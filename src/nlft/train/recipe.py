"""The training recipe: one training of NLFT or a baseline (SFT, DFT, CUT, ReFT, SDFT) into a run directory.

:func:`run_training` takes :data:`~nlft.train.options.TrainOptions` and returns a :class:`TrainResult`;
bad input raises :class:`~nlft.utils.files.DataError` (or ValueError) before anything is written.
All methods read the same data file, train under the prompt its outputs were generated with (their
provenance; ``base_template`` sets another), and share the LoRA and optimiser settings (the paper's:
LoRA r 16, alpha 16, dropout 0.05 on the MLP projections; AdamW, cosine schedule, lr 5e-5, batch 4).

The run directory (:mod:`nlft.train.rundir`) gets ``config.yaml`` (the resolved options, reusable
as ``--config``), ``manifest.json`` (versions, seed, machine, per-epoch wall time and peak memory),
``log_history.jsonl``, checkpoints, the final adapter (or model with ``full``) and its model card.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from nlft.train.options import METHODS, NLFT_KNOBS, TrainOptions
from nlft.utils.files import DataError, respect_umask


@dataclass
class TrainResult:
    """What :func:`run_training` did: the run directory, the final weights, and how the run ended."""

    run_dir: Path
    method: str
    final: dict[str, Any]  # the manifest's "final": {"model": ..., "adapter": ...}, paths relative to run_dir
    stopped: dict[str, Any] | None = None  # the drift monitor ended the run: by, reason, step, epoch
    kept: dict[str, Any] | None = None  # the epoch whose weights were kept (keep, epoch, ...)
    card: Path | None = None  # the model card written next to the weights
    trained: bool = True  # False when a resumed run had finished or been stopped by the drift monitor: nothing to do
    main_process: bool = True  # False in the other processes of a distributed run (the main one writes the run)

    @property
    def weights(self) -> Path:
        """The folder of the final adapter (or of the whole model)."""
        return self.run_dir / (self.final.get("adapter") or self.final["model"])


def say(message: str) -> None:
    """One line of progress on stderr (``nlft train: ...``): resumes, the drift monitor, the kept epoch."""
    print(f"nlft train: {message}", file=sys.stderr)


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


def peft_setup(model: Any, opts: TrainOptions) -> tuple[Any, Any]:
    """``(model, peft_config)``: a trainable PeftModel from ``adapter``, or a fresh LoRA config (None if ``full``).

    The LoRA config is TRL's (``ModelConfig`` + ``get_peft_config``: task CAUSAL_LM, no bias).
    """
    if opts.adapter:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, opts.adapter, is_trainable=True), None
    if opts.full:
        return model, None
    from trl import ModelConfig, get_peft_config

    targets = lora_targets(model, opts.lora_targets)
    config = ModelConfig(use_peft=True, lora_r=opts.lora_r, lora_alpha=opts.lora_alpha,
                         lora_dropout=opts.lora_dropout, lora_target_modules=targets, lora_task_type="CAUSAL_LM")
    # ModelConfig turns a one-name list into a string, which PEFT reads as a regular expression of whole
    # module paths: keep the list, so that --lora-targets c_attn means the modules named c_attn.
    config.lora_target_modules = targets
    return model, get_peft_config(config)


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
        # Without it, a machine with no accelerator runs `accelerate launch --num_processes N` as N separate runs.
        "use_cpu": not _accelerator(),
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


def _accelerator() -> bool:
    """Whether torch sees an accelerator (CUDA, MPS, XPU, ...)."""
    import torch

    return torch.accelerator.is_available()


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

    # Sharded weights (FSDP, DeepSpeed) are gathered by every process together, as Trainer.save_model does;
    # the main process writes them.
    state_dict = None
    if getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False):
        state_dict = trainer.accelerator.get_state_dict(trainer.model)
    write = _main_process()
    # Paths relative to the run directory (or absolute): the run can move and be read from anywhere.
    if hasattr(model, "peft_config"):
        target = run_dir / "adapter"
        if write:  # the trained adapter only (SDFT's moving-average teacher is an adapter of the same model)
            model.save_pretrained(target, selected_adapters=[model.active_adapter], state_dict=state_dict)
            tokenizer.save_pretrained(target)
            respect_umask(target)
        return {"model": portable_path(base_model, run_dir), "adapter": "adapter"}
    target = run_dir / "model"
    if write:
        model.save_pretrained(target, state_dict=state_dict)
        tokenizer.save_pretrained(target)
        respect_umask(target)
    return {"model": "model", "adapter": None}


def _main_process() -> bool:
    """Whether this is the main process of the run (always, outside a distributed launch)."""
    from accelerate import PartialState

    return PartialState().is_main_process


# ---- the recipe -----------------------------------------------------------------------------------------


def end_processes() -> None:
    """After a run under ``accelerate launch``: wait for every process, then tear the process group down.

    Without it, an interpreter that exits with gloo's threads still running can abort ("terminate called without an
    active exception") after the work is done. A no-op in one process.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run_training(opts: TrainOptions) -> TrainResult:
    """Run one training of ``opts.method`` on ``opts.data`` into the run directory ``opts.out``.

    ``opts.resume`` continues the run found there (its last complete checkpoint); without it a
    directory that already holds a run is refused. Raises DataError (bad data, options or run
    directory) or ValueError before training starts.
    """
    import torch

    from nlft.tasks.registry import common_task, resolve_prompt
    from nlft.train.callbacks import EpochEvalCallback
    from nlft.train.hub import data_summary, push_to_hub, write_model_card
    from nlft.train.rundir import RunRecorder, last_checkpoint
    from nlft.utils.files import lock_dir
    from nlft.utils.models import load_model, load_tokenizer, resolve_model_path

    run_dir = Path(opts.out)
    checkpoint = last_checkpoint(run_dir) if run_dir.is_dir() else None
    if opts.resume and checkpoint is None and not (run_dir / "warmup" / "model").is_dir():
        say(f"no checkpoint in {run_dir}; starting from scratch")
    if not opts.resume and (checkpoint is not None or (run_dir / "manifest.json").exists()):
        raise DataError("the run directory already holds a run: add --resume to continue it, or choose another --out",
                        path=run_dir)
    if opts.keep == "best":
        from nlft.train.selection import check_validation_source

        if not opts.evaluates:
            raise DataError("--keep best needs --eval-each-epoch or --eval-steps (the accuracy it chooses by)",
                            field="keep")
        if opts.method == "reft":
            raise DataError("--keep best is for nlft, cut and sft runs", field="keep")
        check_validation_source(opts.eval_data, opts.eval_split)
    if opts.resume and (stopped := _stopped_by_monitor(run_dir)) and opts.drift_action in ("stop", "restore"):
        say(f"{run_dir} was stopped by the drift monitor at epoch {stopped['epoch']:.2f}, step {stopped['step']} "
            f"({stopped['reason']}); its weights: {stopped.get('final')}. To train on regardless: --resume "
            "--drift-action warn")
        final = stopped.pop("final") or {}
        return TrainResult(run_dir, opts.method, final, stopped=stopped, trained=False)
    if opts.resume and (final := _finished(run_dir, opts)):
        say(f"{run_dir} has finished (its weights: {final.get('adapter') or final.get('model')}); it is left as it is: "
            "nothing to resume. To train again, choose another --out")
        return TrainResult(run_dir, opts.method, final, trained=False)
    weights_meta = None
    if opts.from_weights:
        from nlft.train.weights import read_weights

        if opts.method != "nlft":
            raise DataError(f"--from-weights trains NLFT's exported weights: use --method nlft, not {opts.method}",
                            field="from_weights")
        weights_meta, records = read_weights(opts.from_weights)
        template, chat = weights_meta["prompts"]["base_template"], weights_meta["prompts"]["use_chat_template"]
        if weights_meta["model"] != opts.model:
            say(f"the weights in {opts.from_weights} were measured with {weights_meta['model']}; training {opts.model}")
    else:
        records = _load_records(opts.data)
        if opts.method in ("nlft", "cut"):
            from nlft.train.views import validate_records

            # Here, where the file is known, so that a bad row is reported by file name.
            validate_records(records, source=opts.data, needs_judgment=True)
        if opts.method == "sdft":
            sdft_context = _check_sdft(opts, records)
        template, chat = training_prompt(records, opts)
    if chat != opts.use_chat_template:  # None follows the records' provenance
        opts = replace(opts, use_chat_template=chat)
    from nlft.utils.models import check_model

    check_model(opts.model)  # a mistyped name: one line, before the run directory exists
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
    recorder.manifest["data"] = data_summary(opts.from_weights or opts.data, records)
    if opts.evaluates:
        from nlft.tasks.sources import load_questions

        eval_rows = load_questions(opts.eval_data, data_dir=opts.eval_data_dir, split=opts.eval_split,
                                   limit=opts.eval_limit, seed=opts.seed, answer_type=opts.eval_answer_type)
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
            template=(template if opts.eval_prompt == "train"
                      else resolve_prompt(opts.eval_prompt, common_task(eval_rows))),
            use_chat_template=opts.use_chat_template, source=opts.eval_data, merge_adapter=opts.eval_merged,
            every_steps=opts.eval_steps))
    device_map = "cuda" if torch.cuda.is_available() else None

    def fresh_model(path: str) -> Any:
        return load_model(path, dtype=opts.dtype, device_map=device_map) if device_map else load_model(
            path, dtype=opts.dtype)

    method = opts.method
    monitor = None
    if weights_meta is not None:
        final, monitor, trainer = _train_from_weights(opts, tokenizer, run_dir, callbacks, fresh_model(opts.model),
                                                      resolved, recorder, checkpoint, base_model, weights_meta)
    elif method in ("nlft", "cut"):
        from nlft.train.config import DEFAULT_PRESET, NLFTConfig
        from nlft.train.monitor import DriftMonitor
        from nlft.train.trainer import NLFTTrainer

        monitor = DriftMonitor(opts.drift_factor, opts.drift_action)
        callbacks.append(monitor)
        knobs = {k: getattr(opts, k) for k in NLFT_KNOBS if getattr(opts, k) is not None}
        cfg = NLFTConfig.from_preset(opts.preset or DEFAULT_PRESET, **common_args(opts, run_dir), loss_type=method,
                                     max_length=opts.max_length, truncation=opts.truncation,
                                     use_chat_template=opts.use_chat_template, base_template=template, **knobs)
        resolved.update({k: getattr(cfg, k) for k in NLFT_KNOBS})
        model, peft_config = peft_setup(fresh_model(opts.model), opts)
        trainer = NLFTTrainer(model=model, args=cfg, train_dataset=_nlft_records(records), processing_class=tokenizer,
                              peft_config=peft_config, callbacks=callbacks)
        final = _run_trainer(trainer, tokenizer, run_dir, opts, base_model, resolved, recorder, checkpoint)
    elif method in ("sft", "dft"):
        trainer = _sft_trainer(opts, fresh_model(opts.model), tokenizer, records, run_dir, callbacks, opts.epochs,
                               opts.sft_data, template, loss_type="dft" if method == "dft" else "nll")
        final = _run_trainer(trainer, tokenizer, run_dir, opts, base_model, resolved, recorder, checkpoint)
    elif method == "sdft":
        trainer = _sdft_trainer(opts, fresh_model(opts.model), tokenizer, records, run_dir, callbacks, template,
                                sdft_context, recorder)
        final = _run_trainer(trainer, tokenizer, run_dir, opts, base_model, resolved, recorder, checkpoint)
        recorder.manifest["sdft"]["generation"] = trainer.generation_cost()
    elif method == "reft":
        final = _train_reft(opts, tokenizer, records, run_dir, callbacks, recorder, resolved, fresh_model, checkpoint,
                            template)
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not _main_process():
        return TrainResult(run_dir, method, final, main_process=False)
    recorder.manifest["final"] = final
    if monitor is not None:
        _record_monitor(recorder, monitor)
    if method in ("nlft", "cut") and weights_meta is None:
        from nlft.train.trainer import CLASS_REPORT_FILE

        report = Path(run_dir) / CLASS_REPORT_FILE  # measured before the first step, also by an earlier attempt
        if trainer.class_report is not None or report.exists():
            recorder.manifest["token_classes"] = trainer.class_report or json.loads(report.read_text())
    if opts.keep == "best":
        _record_kept(recorder, trainer, run_dir, opts)
    elif recorder.manifest["epochs"]:
        recorder.manifest["kept"] = {"keep": "last", "epoch": recorder.manifest["epochs"][-1]["epoch"]}
    recorder.write_manifest()
    card = write_model_card(run_dir)
    if opts.push_to_hub and card is not None:
        push_to_hub(card.parent, opts.push_to_hub, private=opts.hub_private or None)
        say(f"uploaded {card.parent} to https://huggingface.co/{opts.push_to_hub}")
    return TrainResult(run_dir, method, final, stopped=recorder.manifest.get("stopped"),
                       kept=recorder.manifest.get("kept"), card=card)



def _train_from_weights(opts: TrainOptions, tokenizer: Any, run_dir: Path, callbacks: list[Any], model: Any,
                        resolved: dict[str, Any], recorder: Any, checkpoint: str | None, base_model: str,
                        meta: dict[str, Any]) -> tuple[dict[str, Any], Any, Any]:
    """``--from-weights``: TRL's SFTTrainer with NLFT's loss on the exported weights
    (:class:`nlft.integrations.trl.NLFTWeightsTrainer`), the drift monitor watching it as it watches NLFTTrainer.
    Returns ``(final weights, monitor, trainer)``."""
    from trl import SFTConfig

    from nlft.train.monitor import DriftMonitor
    from nlft.train.weights_trainer import NLFTWeightsTrainer, weights_dataset

    monitor = DriftMonitor(opts.drift_factor, opts.drift_action)
    callbacks.append(monitor)
    cfg = SFTConfig(**common_args(opts, run_dir), packing=False)
    model, peft_config = peft_setup(model, opts)
    trainer = NLFTWeightsTrainer(model, cfg, train_dataset=weights_dataset(opts.from_weights),
                                 processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)
    resolved.update(meta["settings"])
    recorder.manifest["weights"] = {"file": str(Path(opts.from_weights).resolve()), **{
        k: meta[k] for k in ("model", "backend", "view_probs", "error_reference", "settings")}}
    return _run_trainer(trainer, tokenizer, run_dir, opts, base_model, resolved, recorder, checkpoint), monitor, trainer


def training_prompt(records: list[dict[str, Any]], opts: TrainOptions) -> tuple[str, bool | None]:
    """``(template, use_chat_template)`` every method trains under: ``--base-template``, else the records' own
    (:func:`nlft.train.views.training_prompt`)."""
    from nlft.tasks.prompts import read_template
    from nlft.train.views import training_prompt as rule

    template = read_template(opts.base_template, field="base_template") if opts.base_template else None
    return rule(records, template=template, use_chat_template=opts.use_chat_template, source=opts.data or "data")


def _sft_trainer(opts: TrainOptions, model: Any, tokenizer: Any, records: list[dict[str, Any]], out: Path,
                 callbacks: list[Any], epochs: float, data_mode: str, template: str, loss_type: str = "nll") -> Any:
    """TRL's SFTTrainer (``loss_type="dft"``: Dynamic Fine-Tuning, tokens weighted by their detached probability)."""
    from trl import SFTConfig

    from nlft.train.baselines import make_sft_trainer

    cfg = SFTConfig(**common_args(opts, out, epochs=epochs), max_length=opts.max_length, packing=False,
                    completion_only_loss=True, loss_type=loss_type)
    model, peft_config = peft_setup(model, opts)
    return make_sft_trainer(model, tokenizer, records, cfg, mode=data_mode, peft_config=peft_config,
                            callbacks=callbacks, base_template=template,
                            use_chat_template=opts.use_chat_template, source=opts.data)


# ---- SDFT ---------------------------------------------------------------------------------------------------


def _check_sdft(opts: TrainOptions, records: list[dict[str, Any]]) -> str:
    """Refuse SDFT settings and data that cannot train (DataError); the privileged-context template's text."""
    from nlft.train.sdft import SDFT_CONTEXT, read_context_template, sdft_examples

    per_step = opts.batch_size * opts.grad_accum
    if per_step % opts.sdft_num_generations:
        raise DataError(f"batch_size x grad_accum ({per_step}) must be a multiple of sdft_num_generations "
                        f"({opts.sdft_num_generations})", field="sdft_num_generations")
    questions = len(sdft_examples(records, source=opts.data or "data"))
    if questions < per_step // opts.sdft_num_generations:
        raise DataError(f"{questions} distinct questions, fewer than the {per_step // opts.sdft_num_generations} "
                        "of one optimizer step (batch_size x grad_accum / sdft_num_generations)", path=opts.data)
    return read_context_template(opts.sdft_context_template) if opts.sdft_context_template else SDFT_CONTEXT


def _sdft_trainer(opts: TrainOptions, model: Any, tokenizer: Any, records: list[dict[str, Any]], out: Path,
                  callbacks: list[Any], template: str, context: str, recorder: Any) -> Any:
    """TRL's SDFTTrainer (:mod:`nlft.train.sdft`) on the records' questions; its teacher's prompt into the manifest.

    One optimizer step: ``batch_size x grad_accum`` completions, ``sdft_num_generations`` of each of
    ``batch_size x grad_accum / sdft_num_generations`` questions, sampled once at the start of the step.
    """
    from trl.experimental.sdft import SDFTConfig

    from nlft.train.sdft import TEACHER_PROMPT, make_sdft_trainer

    # TRL's defaults but two: prompts are never cut (max_prompt_length None; TRL would cut them from the left), and
    # LoRA keeps its dropout like every other method (TRL's disable_dropout would zero it).
    cfg = SDFTConfig(**common_args(opts, out), num_generations=opts.sdft_num_generations,
                     max_completion_length=opts.sdft_max_new_tokens, temperature=opts.sdft_temperature,
                     teacher_model_kind=opts.sdft_teacher, teacher_prompt_template=TEACHER_PROMPT,
                     max_prompt_length=None, disable_dropout=False)
    model, peft_config = peft_setup(model, opts)
    recorder.manifest["sdft"] = {"privileged_context": context, "teacher_prompt_template": TEACHER_PROMPT,
                                 "teacher": opts.sdft_teacher}
    return make_sdft_trainer(model, tokenizer, records, cfg, peft_config=peft_config, callbacks=callbacks,
                             base_template=template, use_chat_template=opts.use_chat_template,
                             context_template=context, source=opts.data)


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


def _finished(run_dir: Path, opts: TrainOptions) -> dict[str, Any] | None:
    """The manifest's ``final`` weights when the run finished (training done, weights saved) at the length ``opts``
    asks for (its ``epochs`` and ``max_steps`` as in its ``config.yaml``), else None: a longer one continues it, and
    so does a run the drift monitor stopped (``--resume --drift-action warn``)."""
    import yaml

    path = run_dir / "manifest.json"
    if not path.exists():
        return None
    manifest = json.loads(path.read_text(encoding="utf-8"))
    final = manifest.get("final")
    if not isinstance(final, dict) or not final or manifest.get("stopped"):  # a stopped run did not reach its length
        return None
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    same = config.get("epochs") == opts.epochs and config.get("max_steps") == opts.max_steps
    return final if same else None


def _stopped_by_monitor(run_dir: Path) -> dict[str, Any] | None:
    """The manifest's ``stopped`` entry (with the run's ``final`` weights) when the drift monitor ended the run."""
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
        restored = monitor.summary()["restored"]
        recorder.manifest["stopped"] = {"by": "drift monitor", "reason": report.message(), "step": report.step,
                                        "epoch": report.epoch, "action": monitor.action, "restored": restored}
        kept = (f"; the weights kept are {restored}'s, from before the drift" if restored else
                "; no checkpoint was saved before the drift, so the weights are those at the stop"
                if monitor.action == "restore" else "")
        say(f"stopped by the drift monitor at epoch {report.epoch:.2f} (step {report.step}){kept}")


def _record_kept(recorder: Any, trainer: Any, run_dir: Path, opts: TrainOptions) -> None:
    """Which epoch ``--keep best`` kept (epoch, step, metric, value, n) into the manifest, and say so."""
    from nlft.train.selection import announce, kept_epoch, last_eval

    kept = kept_epoch(run_dir, trainer.state.best_global_step, opts.best_metric)
    recorder.manifest["kept"] = {"keep": "best", **(kept or {"epoch": None})}
    if kept is not None:
        say(announce(kept, last_eval(run_dir)))


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
        why = ("the installed TRL has PPO" if algo == "ppo"
               else "the installed TRL has no PPO (trl > 1.12; pip install 'nlft[reft-ppo]' for it)")
        say(f"--reft-algo auto: {algo.upper()}, as {why}")
    else:
        why = "asked for"
    resolved["reft_algo"] = algo
    recorder.manifest["reft_algo"] = {"asked": opts.reft_algo, "used": algo, "why": why}
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
    rl_opts = replace(opts, adapter=None)
    model, peft_config = peft_setup(fresh_model(str(warm_model)), rl_opts)
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


