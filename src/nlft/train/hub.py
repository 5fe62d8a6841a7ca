"""Hugging Face conventions for trained runs: a model card next to the weights, and an upload to the Hub.

:func:`write_model_card` writes ``README.md`` into a run's ``adapter/`` (or ``model/``) folder, as TRL
does for its trainers: YAML metadata (base model, ``library_name: peft``, tags ``nlft`` and
``arxiv:2412.20382``) and a text with the method and its settings, the data file and its counts,
the metrics and the library versions. It reads only the run directory (``manifest.json``,
``config.yaml``, ``metrics.json`` or ``eval/metrics.json``), so ``nlft eval --run`` can refresh it
with the accuracy. :func:`push_to_hub` uploads the folder with ``huggingface_hub``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

ARXIV_ID = "2412.20382"
PAPER = f"https://arxiv.org/abs/{ARXIV_ID}"
CARD = "README.md"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
METHOD_NAMES = {"nlft": "NLFT (Natural Language Fine-Tuning)", "sft": "SFT", "cut": "CUT (Contrastive Unlikelihood "
                "Training)", "reft": "ReFT (SFT warm-up, then reinforcement learning)", "dft": "DFT",
                "sdft": "SDFT (TRL's self-distilled fine-tuning, Shenfeld et al. 2026)"}
# config.yaml keys that describe the method, by method (the rest are shown under "optimisation")
METHOD_SETTINGS = {
    "nlft": ("p0_correct", "c1", "c2", "c3", "r0", "p0_incorrect", "irrelevant_incorrect", "max_error_fraction",
             "phrase_rule", "phrase_threshold", "max_phrase_span", "view_probs", "nll_coef", "loss_multiplier"),
    "cut": ("cut_threshold", "view_probs", "nll_coef", "loss_multiplier"),
    "sft": ("sft_data",),
    "reft": ("reft_algo", "reft_warmup_epochs", "reft_warmup_data", "reft_kl", "reft_num_generations",
             "reft_max_new_tokens", "reft_temperature"),
    "sdft": ("sdft_num_generations", "sdft_max_new_tokens", "sdft_temperature", "sdft_teacher",
             "sdft_context_template"),
}
OPTIMISATION = ("epochs", "max_steps", "lr", "lr_scheduler", "warmup", "weight_decay", "batch_size", "grad_accum",
                "seed", "lora_r", "lora_alpha", "lora_dropout", "lora_targets", "full", "max_length")
CITATION = """@article{liu2024nlft,
  title   = {Natural Language Fine-Tuning},
  author  = {Liu, Jia and others},
  journal = {arXiv preprint arXiv:2412.20382},
  year    = {2024}
}"""


def data_summary(path: str | os.PathLike, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"path" (absolute), "rows", "correct", "incorrect", "grading"}`` of a training data file, for the manifest
    (``grading``: how its outputs were graded, strict or flexible, when the records' provenance says one)."""
    correct = sum(1 for r in rows if r.get("correct") is True)
    gradings = {((r.get("provenance") or {}).get("judge") or {}).get("grading") for r in rows} - {None}
    return {"path": str(Path(path).resolve()), "rows": len(rows), "correct": correct,
            "incorrect": sum(1 for r in rows if r.get("correct") is False),
            "grading": gradings.pop() if len(gradings) == 1 else None}


def hub_model_id(model: str | None) -> str | None:
    """The Hub id of a base model (``smollm2`` -> SmolLM2's), or None for a local folder."""
    from nlft.utils.models import SMOLLM2_ALIASES

    if model is None or model in SMOLLM2_ALIASES:
        return SMOLLM2_HUB_ID
    if Path(model).exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", model):
        return None
    return model


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def model_card(run_dir: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """``(metadata, markdown body)`` of the model card of a finished run."""
    import yaml

    from nlft.train.rundir import CONFIG, MANIFEST

    run = Path(run_dir)
    manifest = _read_json(run / MANIFEST)
    try:
        config = yaml.safe_load((run / CONFIG).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    method = manifest.get("method") or config.get("method") or "nlft"
    base = config.get("model") or (manifest.get("final") or {}).get("model")
    base_id = hub_model_id(base)
    full = bool(config.get("full"))
    tags = ["nlft", f"arxiv:{ARXIV_ID}", method, "transformers", "trl"]
    if not full:
        tags[3:3] = ["lora", "peft"]
        if base_id:
            tags.append(f"base_model:adapter:{base_id}")
    meta: dict[str, Any] = {"library_name": "transformers" if full else "peft", "pipeline_tag": "text-generation",
                            "tags": list(dict.fromkeys(tags))}
    if base_id:
        meta = {"base_model": base_id, **meta}

    kind = "full fine-tune" if full else "LoRA adapter"
    lines = [f"# {METHOD_NAMES.get(method, method)} {kind} of {base_id or base}", ""]
    paper = f"Liu et al. 2024, [arXiv {ARXIV_ID}]({PAPER})"
    how = (f"NLFT (Natural Language Fine-Tuning, {paper})" if method == "nlft"
           else f"{METHOD_NAMES.get(method, method)}, a baseline of NLFT ({paper}),")
    lines += [f"A {kind} of `{base_id or base}` trained with {how} by the `nlft` library.", ""]
    # ReFT's adapter sits on the SFT warm-up merged into the base model, saved in the run directory
    on = (manifest.get("final") or {}).get("model") if method == "reft" else None
    if on and not Path(on).is_absolute():
        lines += [f"The adapter applies to the warm-up model, `{on}` in the run directory (the SFT warm-up "
                  f"merged into `{base_id or base}`).", ""]
    if not full:
        lines += ["## Use", "", "```python", "from peft import PeftModel",
                  "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  f'base = AutoModelForCausalLM.from_pretrained("{on or base_id or base}")',
                  'model = PeftModel.from_pretrained(base, "PATH_OR_REPO_OF_THIS_ADAPTER")',
                  f'tokenizer = AutoTokenizer.from_pretrained("{base_id or base}")', "```", ""]
    lines += ["## Training", "", f"- method: `{method}`"]
    settings = [k for k in METHOD_SETTINGS.get(method, ()) if k in config]
    if settings:
        lines.append("- method settings: " + ", ".join(f"`{k}` {_fmt(config[k])}" for k in settings))
    lines.append("- optimisation: " + ", ".join(f"`{k}` {_fmt(config[k])}" for k in OPTIMISATION if k in config))
    data = manifest.get("data") or {}
    if data:
        lines.append(f"- data: `{Path(data['path']).name}` ({data.get('rows')} rows: {data.get('correct')} correct, "
                     f"{data.get('incorrect')} incorrect outputs)")
    if manifest.get("global_step") is not None:
        lines.append(f"- optimiser steps: {manifest['global_step']}, seed {manifest.get('seed')}")
    lines.append("")

    trained = manifest.get("metrics") or {}
    metrics: dict[str, Any] = {}
    if "train/train_loss" in trained:
        metrics["train_loss"] = trained["train/train_loss"]
    if "train/train_runtime" in trained:
        metrics["train_runtime (s)"] = round(float(trained["train/train_runtime"]), 1)
    evaluation = _read_json(run / "metrics.json") or _read_json(run / "eval" / "metrics.json")
    for key in ("accuracy_strict", "accuracy_flexible", "n"):
        if key in evaluation:
            metrics[key] = evaluation[key]
    if evaluation.get("data"):
        metrics["evaluated on"] = f"{evaluation['data']} ({evaluation.get('split', '-')})"
    if metrics:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics.items()] + [""]
    lines += _evaluation_lines(run, evaluation)
    packages = {k: v for k, v in (manifest.get("packages") or {}).items() if v}
    if packages:
        lines += ["## Framework versions", ""] + [f"- {k} {v}" for k, v in packages.items()] + [""]
    lines += ["## Citation", "", "```bibtex", CITATION, "```", ""]
    return meta, "\n".join(lines)


def _evaluation_lines(run: Path, evaluation: dict[str, Any]) -> list[str]:
    """The card's words on the accuracy: which questions it was measured on, and the base model on the same ones
    (the paired change ``nlft eval`` recorded, else a base model's ``base-eval/metrics.json`` on the same data)."""
    if "accuracy_flexible" not in evaluation:
        return []
    data = evaluation.get("data") or "a question set the metrics do not name"
    split = f", split {evaluation['split']}" if evaluation.get("split") else ""
    lines = ["## Evaluation", "",
             f"Accuracy on {evaluation.get('n', '?')} questions of `{data}`{split}: flexible "
             f"{evaluation['accuracy_flexible']:.1%} (the answer read wherever the output states it), strict "
             f"{evaluation.get('accuracy_strict', 0.0):.1%} (only a '####' answer line)."]
    change = evaluation.get("vs_base")
    if isinstance(change, dict) and isinstance(change.get("flexible"), dict):
        c = change["flexible"]
        lines.append(f"The base model on the same questions: flexible {c['before']:.1%} -> {c['after']:.1%} "
                     f"({100 * c['change']:+.1f} points: {c['gained']} gained, {c['lost']} lost, exact paired "
                     f"p={c['p_value']:.2g}).")
    else:
        base = next((m for m in (_read_json(f / "metrics.json") for f in (run / "base-eval", run.parent / "base-eval"))
                     if m.get("data") == evaluation.get("data") and m.get("n") == evaluation.get("n")
                     and "accuracy_flexible" in m), None)
        lines.append(f"The base model on the same questions: flexible {base['accuracy_flexible']:.1%}, strict "
                     f"{base.get('accuracy_strict', 0.0):.1%}." if base else
                     "The base model was not evaluated on these questions (`nlft eval --run RUN --vs-base` does).")
    return [*lines, ""]


def write_model_card(run_dir: str | os.PathLike, folder: str | os.PathLike | None = None) -> Path | None:
    """Write the run's model card into ``folder`` (default: its ``adapter/`` or ``model/``); its path, or None."""
    import yaml

    from nlft.utils.files import atomic_write_text

    run = Path(run_dir)
    if folder is None:
        folder = next((run / f for f in ("adapter", "model") if (run / f).is_dir()), None)
        if folder is None:
            return None
    meta, body = model_card(run)
    path = Path(folder) / CARD
    atomic_write_text(path, "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n\n" + body)
    return path


def push_to_hub(folder: str | os.PathLike, repo_id: str, *, private: bool | None = None, token: str | None = None,
                commit_message: str = "Upload adapter trained with nlft") -> Any:
    """Create ``repo_id`` if needed and upload ``folder`` (weights, tokenizer, model card) to it."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                             commit_message=commit_message)
