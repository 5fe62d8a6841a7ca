"""Static NLFT weights: every response token's class, scale and loss, measured once, in a JSONL file.

NLFT's scales are detached measurements, so they can be taken before training and handed to any trainer
that accepts per-token loss weights. :func:`write_weights` measures them with the *initial* model, as
:class:`~nlft.train.trainer.NLFTTrainer` does with ``view_probs="cached"`` and ``error_reference="initial"``
(the first step of such a run reads exactly these scales), and writes one row per record:

========================  =================================================================================
``row``                   the record's 0-based index in the data file
``correct``               whether the output is correct
``prompt_ids``            X_base's prompt tokens (chat template and all), as the model reads them
``response_ids``          the output's tokens, EOS included: ``prompt_ids + response_ids`` is the sequence
``prompt``, ``tokens``    the prompt's text and each response token's text piece
``classes``               per response token: ``saliency``, ``sub_saliency`` or ``irrelevant`` (correct
                          output); ``erroneous``, ``near_error`` or ``irrelevant`` (incorrect output)
``scales``                per response token: its factor in the loss (NLFT's S_t, times the class-balance,
                          ``nll_coef`` and ``loss_multiplier`` factors when those are set)
``loss``                  per response token: ``likelihood`` (``-S log P``) or ``unlikelihood``
                          (``-S log(1 - P)``)
``likelihood_weights``    per response token: ``scales`` where the loss is likelihood, 0 where it is
                          unlikelihood; a plain weight for trainers without unlikelihood
========================  =================================================================================

The loss over a batch is ``(1/N) * sum_t scales_t * (-log P_t or -log(1 - P_t))`` with N the response
tokens of the accumulated batch (:func:`nlft.method.loss.nlft_loss`). A sidecar ``<name>.meta.json``
holds the model, the settings and the prompts the file was made with; a rerun with the same arguments
resumes an interrupted file, with other arguments it is refused.

What static weights lose against dynamic NLFT: the views (P_std, P_judge), the erroneous-token ratio and
the phrases are those of the initial model for the whole run, where the dynamic default re-measures them
with the model being trained at every step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from nlft.method.clustering import spans_to_mask, word_spans
from nlft.method.logps import IGNORE_INDEX
from nlft.method.params import NLFT_SETTINGS
from nlft.method.scales import TokenScales, batch_token_scales, class_balance_weights
from nlft.train.config import DEFAULT_PRESET, NLFTConfig
from nlft.train.trainer import NLFTCollator, NLFTTrainer, measure_token_scales, tokenize_records
from nlft.train.views import training_prompt, validate_records
from nlft.utils.files import DataError, read_jsonl
from nlft.utils.resume import check_run_args, run_resumable

WEIGHTS_FORMAT = "nlft-weights/1"
LIKELIHOOD, UNLIKELIHOOD = "likelihood", "unlikelihood"
# Settings that change how fast the numbers come, not the numbers: left out of the sidecar.
_SPEED_SETTINGS = ("view_batch_size", "share_prefix", "padding_free")
# Per response token, in every row.
TOKEN_FIELDS = ("response_ids", "tokens", "classes", "scales", "loss", "likelihood_weights")

# (p_base, p_std, p_judge) ``(B, R)`` of a collated batch, measured elsewhere (a server).
ViewMeasure = Callable[[list[dict[str, Any]]], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class WeightsResult(NamedTuple):
    """What :func:`write_weights` wrote: the weights file, its sidecar and the rows."""

    path: Path
    meta_path: Path
    rows: list[dict[str, Any]]


def meta_path(path: str | os.PathLike) -> Path:
    """The sidecar of a weights file: ``weights.jsonl`` -> ``weights.meta.json``."""
    path = Path(path)
    return path.with_name(path.stem + ".meta.json")


def weights_config(preset: str = DEFAULT_PRESET, **settings: Any) -> NLFTConfig:
    """The NLFT settings of an export: a preset and overrides, with the views cached from the initial model.

    ``view_probs`` is ``"cached"`` and ``error_reference`` ``"initial"`` whatever the preset says: the
    weights are measured once, before training. A KL anchor reads the model during training and has no
    static form; only ``loss_type="nlft"`` is exported.
    """
    settings = {"output_dir": "nlft-weights", "report_to": "none", **settings,
                "view_probs": "cached", "error_reference": "initial"}
    config = NLFTConfig.from_preset(preset, **settings)
    if config.loss_type != "nlft":
        raise ValueError(f"only loss_type='nlft' has static weights, got {config.loss_type!r}")
    if config.kl_coef:
        raise ValueError("kl_coef anchors to the initial model during training and has no per-token weight: "
                         "set kl_coef=0 to export")
    return config


def export_meta(config: NLFTConfig, *, model: str, backend: str, rows: int) -> dict[str, Any]:
    """The sidecar: what the file was made from and with (checked on resume)."""
    from nlft import __version__

    return {
        "format": WEIGHTS_FORMAT, "nlft_version": __version__, "model": model, "backend": backend, "rows": rows,
        "view_probs": "cached", "error_reference": "initial", "loss_type": config.loss_type,
        "settings": {k: getattr(config, k) for k in NLFT_SETTINGS if k not in _SPEED_SETTINGS},
        "prompts": {"base_template": config.base_template, "standard_template": config.standard_template,
                    "judge_template": config.judge_template, "use_chat_template": config.use_chat_template},
        "max_length": config.max_length, "truncation": config.truncation,
    }


def token_classes(ts: TokenScales, correct: torch.Tensor, response_mask: torch.Tensor,
                  spans: tuple[torch.Tensor, torch.Tensor] | None) -> list[list[str]]:
    """The class name of every response token of a batch (``(B, R)`` inputs), rows cut to their length."""
    mask = response_mask.to(torch.bool)
    ok = correct.to(torch.bool)[:, None]
    near = (spans_to_mask(ts.erroneous, *spans) if spans is not None else torch.zeros_like(mask)) & ~ok
    names = []
    for i in range(mask.shape[0]):
        row = []
        for t in range(int(mask[i].sum())):
            if ok[i, 0]:
                row.append("saliency" if ts.saliency[i, t] else "sub_saliency" if ts.sub_saliency[i, t]
                           else "irrelevant")
            else:
                row.append("erroneous" if ts.erroneous[i, t] else "near_error" if near[i, t] else "irrelevant")
        names.append(row)
    return names


def loss_factors(ts: TokenScales, correct: torch.Tensor, response_mask: torch.Tensor, config: NLFTConfig,
                 class_weights: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """Each token's factor in the trainer's loss ``(B, R)``: S_t with the class-balance, ``nll_coef`` and
    ``loss_multiplier`` factors folded in (each term of that loss is ``factor * -log P`` or ``* -log(1 - P)``)."""
    ok = correct.to(torch.bool)[:, None]
    mask = response_mask.to(torch.bool)
    w_c, w_i = class_weights if config.class_balance else (1.0, 1.0)
    factors = ts.scales * torch.where(ok, w_c, w_i).to(ts.scales.dtype)
    if config.nll_coef:
        factors = factors + config.nll_coef * (ok & mask).to(factors.dtype)
    return factors * config.loss_multiplier * mask


def _rows_of(feats: list[dict[str, Any]], ts: TokenScales, spans: Any, batch: dict[str, torch.Tensor],
             config: NLFTConfig, class_weights: tuple[float, float], tokenizer: Any) -> list[dict[str, Any]]:
    mask = (batch["labels"] != IGNORE_INDEX).cpu()
    correct = batch["correct"].cpu()
    ts = TokenScales(*(t.cpu() for t in ts))
    spans = tuple(s.cpu() for s in spans) if spans is not None else None
    classes = token_classes(ts, correct, mask, spans)
    factors = loss_factors(ts, correct, mask, config, class_weights)
    rows = []
    for i, f in enumerate(feats):
        n = len(f["response_ids"])
        scales = [float(x) for x in factors[i, :n]]
        ul = [bool(x) for x in ts.unlikelihood[i, :n]]
        rows.append({
            "row": f["row_idx"], "correct": bool(f["correct"]), "prompt_ids": list(f["base_prompt_ids"]),
            "response_ids": list(f["response_ids"]), "prompt": tokenizer.decode(f["base_prompt_ids"]),
            "tokens": [tokenizer.decode([t]) for t in f["response_ids"]], "classes": classes[i], "scales": scales,
            "loss": [UNLIKELIHOOD if u else LIKELIHOOD for u in ul],
            "likelihood_weights": [0.0 if u else s for s, u in zip(scales, ul)],
        })
    return rows


def write_weights(records: Sequence[dict[str, Any]], out: str | os.PathLike, *, tokenizer: Any,
                  model: Any = None, model_name: str, config: NLFTConfig | None = None, batch_size: int = 4,
                  measure: ViewMeasure | None = None, backend: str = "local", source: str = "records",
                  progress: bool = True) -> WeightsResult:
    """Measure the NLFT weights of ``records`` and write them to ``out`` (JSONL, module docstring), resumably.

    Args:
        records: NLFT records (``question``, ``reference``, ``output``, ``correct``, ``judgment``).
        out: the weights file; its sidecar is :func:`meta_path`. Rows already there (an interrupted run with
            the same arguments) are kept; a sidecar with other arguments raises :class:`DataError`.
        tokenizer: the model's tokenizer. model: the initial model (on its device), for ``backend="local"``.
        model_name: the name or path written to the sidecar.
        config: the settings (:func:`weights_config`; default: the default preset).
        batch_size: records per forward pass (and per appended chunk).
        measure: for other backends, a function of a chunk of tokenized rows giving ``(p_base, p_std, p_judge)``
            ``(B, R)``; the phrase rule must then be ``word`` or ``none`` (no hidden states leave a server).
        backend: the name written to the sidecar (``local``, ``openai``).
        source: the records' name in error messages.

    Returns:
        :class:`WeightsResult` with every row, in record order.
    """
    from nlft.utils.models import ensure_pad_token

    config = config or weights_config()
    if measure is None and model is None:
        raise ValueError("write_weights needs a model, or a measure function for another backend")
    if measure is not None and config.phrase_rule == "cosine":
        raise ValueError("phrase_rule='cosine' reads the model's hidden states, which a server does not return: "
                         "use phrase_rule='word' or 'none' with this backend")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    records = list(records)
    validate_records(records, source=source, needs_judgment=True)
    ensure_pad_token(tokenizer)
    config.base_template, config.use_chat_template = training_prompt(
        records, template=config.base_template, use_chat_template=config.use_chat_template, source="train_dataset")
    max_length = config.max_length or (NLFTTrainer._default_max_length(model, tokenizer) if model is not None
                                       else min(tokenizer.model_max_length, 4096))
    config.max_length = max_length
    features = tokenize_records(records, tokenizer, config, max_length, source=source)
    n_tokens = [0, 0]
    for f in features:
        n_tokens[0 if f["correct"] else 1] += len(f["response_ids"])
    class_weights = class_balance_weights(*n_tokens)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    check_run_args(out.parent, export_meta(config, model=model_name, backend=backend, rows=len(records)),
                   name=meta_path(out).name)
    collate = NLFTCollator(tokenizer.pad_token_id, *config.needed_views, share_prefix=measure is None and
                           NLFTTrainer._can_share_prefix(config, model))
    device = next(model.parameters()).device if model is not None else torch.device("cpu")

    def process(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        feats = [features[item["row"]] for item in chunk]
        batch = {k: v.to(device) for k, v in collate(feats).items()}
        if measure is None:
            ts, spans = measure_token_scales(model, batch, config)
        else:
            p_base, p_std, p_judge = measure(feats)
            mask = batch["labels"] != IGNORE_INDEX
            spans = word_spans(batch["word_ids"]) if config.phrase_rule == "word" else None
            ts = batch_token_scales(p_base, p_std, p_judge, batch["correct"], mask, spans,
                                    params=config.scale_params)
        return _rows_of(feats, ts, spans, batch, config, class_weights, tokenizer)

    rows = run_resumable([{"row": i} for i in range(len(features))], process, out, chunk_size=batch_size,
                         key="row", progress=progress, desc="weights")
    return WeightsResult(out, meta_path(out), rows)


def server_measure(client: Any, *, api: str = "echo") -> ViewMeasure:
    """A :data:`ViewMeasure` that asks an OpenAI-compatible server for every view's prompt log-probabilities.

    ``client`` has ``prompt_logprobs(token_ids, api) -> list[float | None]`` and ``max_concurrency``
    (:class:`nlft.data.generation.OpenAIChatClient`); ``api``: ``"echo"`` (``echo`` with ``logprobs``) or
    ``"vllm"`` (``prompt_logprobs``). Each row's X_base and X_standard (and X_judge for an
    incorrect output) go to the server as ``prompt ids + response ids``; the response's part of the answer is
    that view's log P of each response token.
    """
    from concurrent.futures import ThreadPoolExecutor

    def measure(feats: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r_max = max(len(f["response_ids"]) for f in feats)
        jobs = [(i, kind, f[key] + f["response_ids"], len(f["response_ids"]))
                for i, f in enumerate(feats)
                for kind, key in ((0, "base_prompt_ids"), (1, "std_prompt_ids"), (2, "judge_prompt_ids"))
                if kind < 2 or not f["correct"]]
        with ThreadPoolExecutor(max_workers=client.max_concurrency) as pool:
            answers = list(pool.map(lambda job: client.prompt_logprobs(job[2], api), jobs))
        probs = torch.zeros(3, len(feats), r_max)
        for (i, kind, _, n), logps in zip(jobs, answers):
            probs[kind, i, :n] = torch.tensor(logps[-n:], dtype=torch.float32).exp()
        return probs[0], probs[1], probs[2]

    return measure


def read_weights(path: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A complete weights file and its sidecar: ``(meta, rows)`` in record order.

    Raises :class:`DataError` when the sidecar is missing, the file is unfinished (rerun ``nlft weights``
    with the same arguments to finish it) or a row's per-token lists do not have one entry per response token.
    """
    import json

    path = Path(path)
    side = meta_path(path)
    if not side.exists():
        raise DataError(f"no sidecar {side.name} next to it: is this a file written by `nlft weights`?", path=path)
    meta = json.loads(side.read_text(encoding="utf-8"))
    if meta.get("format") != WEIGHTS_FORMAT:
        raise DataError(f"format {meta.get('format')!r} is not {WEIGHTS_FORMAT!r}", path=side, field="format")
    rows = sorted(read_jsonl(path), key=lambda r: r["row"])
    if [r["row"] for r in rows] != list(range(meta["rows"])):
        raise DataError(f"holds {len(rows)} of {meta['rows']} rows: rerun `nlft weights` with the same arguments "
                        "to finish it", path=path)
    for row in rows:
        n = len(row["response_ids"])
        bad = next((k for k in TOKEN_FIELDS if len(row[k]) != n), None)
        if bad:
            raise DataError(f"row {row['row']}: {len(row[bad])} entries for {n} response tokens", path=path,
                            field=bad)
    return meta, rows


__all__ = ["LIKELIHOOD", "TOKEN_FIELDS", "UNLIKELIHOOD", "WEIGHTS_FORMAT", "WeightsResult", "export_meta",
           "loss_factors", "meta_path", "read_weights", "server_measure", "token_classes", "weights_config",
           "write_weights"]
