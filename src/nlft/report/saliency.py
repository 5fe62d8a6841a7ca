"""Saliency maps: every output token coloured by its NLFT scale, in a self-contained HTML page.

The model runs once per record, measuring for each response token ``t``:

- ``p_base``, ``p_std``, ``p_judge``: its probability under the three views (``p_judge`` only for
  incorrect outputs, which have a judgment);
- its phrase span ``(lo, hi)`` under the cosine rule (hidden states of the X_base view) and under
  the word rule. Spans do not depend on the thresholds (see :mod:`nlft.method.clustering`).

These numbers are stored in the page. Its JavaScript recomputes the token classes (saliency,
sub-saliency, irrelevant; erroneous, near-error) and scales exactly as
:func:`nlft.method.scales.batch_token_scales` does, so the thresholds and exponents can be tuned with
sliders without running the model again. The page needs no server and no network.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

# Significant digits kept for the probabilities stored in the page (float32 holds about 7).
PROB_DIGITS = 6
DATA_MARKER = "/*__NLFT_DATA__*/null"
TITLE_MARKER = "__NLFT_TITLE__"

def page_params(config: Any = None, **overrides: Any) -> dict[str, Any]:
    """The page's starting hyperparameters: the :data:`~nlft.method.params.PAGE_PARAMS` of an NLFTConfig (or the
    :class:`~nlft.method.params.ScaleParams` defaults), with ``overrides`` that are not None on top.

    Returns a dict with ``p0_correct``, ``c1``, ``c2``, ``c3``, ``r0``, ``p0_incorrect``,
    ``irrelevant`` (``"zero"``/``"reference"``/``"likelihood"``), ``max_error_fraction``, ``phrase_rule``
    (``"cosine"``/``"word"``/``"none"``) and ``cut_threshold``.
    """
    from nlft.method.params import IRRELEVANT_RULES, PAGE_PARAMS, PHRASE_RULES, ScaleParams

    params = ScaleParams.of(config) if config is not None else ScaleParams()
    values = {name: getattr(params, name) for name in PAGE_PARAMS}
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["irrelevant"] = values.pop("irrelevant_incorrect")
    if values["phrase_rule"] not in PHRASE_RULES:
        raise ValueError(f"phrase_rule must be 'cosine', 'word' or 'none', got {values['phrase_rule']!r}")
    if values["irrelevant"] not in IRRELEVANT_RULES:
        raise ValueError(f"irrelevant must be one of {', '.join(IRRELEVANT_RULES)}, got {values['irrelevant']!r}")
    return values


def scale_params(params: dict[str, Any]) -> Any:
    """The :class:`~nlft.method.params.ScaleParams` of a page's hyperparameters (:func:`page_params`)."""
    import dataclasses

    from nlft.method.params import ScaleParams

    names = {f.name for f in dataclasses.fields(ScaleParams)}
    values = {("irrelevant_incorrect" if k == "irrelevant" else k): v for k, v in params.items()}
    return ScaleParams(**{k: v for k, v in values.items() if k in names})


TOKEN_CLASSES = ("saliency", "sub-saliency", "irrelevant", "erroneous", "near-error")


def token_class_counts(examples: Sequence[dict[str, Any]], params: dict[str, Any] | None = None) -> dict[str, int]:
    """How many tokens of ``examples`` the page colours with each NLFT class, at ``params``.

    ``examples``: dicts of :func:`compute_token_probs`; ``params``: :func:`page_params` (None: the
    defaults). Classes as on the page: a correct output's tokens are ``saliency``, ``sub-saliency``
    (in the phrase of a saliency token) or ``irrelevant``; an incorrect output's are ``erroneous``,
    ``near-error`` (in the phrase of an erroneous token) or ``irrelevant``. Counts come from
    :func:`nlft.method.scales.batch_token_scales`, one example at a time.

    Returns ``{class: count}`` over :data:`TOKEN_CLASSES`, plus ``"tokens"`` (all response tokens).
    """
    import torch

    from nlft.method.clustering import spans_to_mask
    from nlft.method.scales import batch_token_scales

    params = params or page_params()
    settings = scale_params(params)
    counts = dict.fromkeys(TOKEN_CLASSES, 0)
    counts["tokens"] = 0
    for ex in examples:
        n = len(ex["tokens"])
        if n == 0:
            continue
        p_base = torch.tensor([ex["p_base"]])
        p_std = torch.tensor([ex["p_std"]])
        p_judge = torch.tensor([ex["p_judge"]]) if ex["p_judge"] is not None else None
        rule = params["phrase_rule"]
        spans = None if rule == "none" else tuple(torch.tensor([side]) for side in ex["spans"][rule])
        got = batch_token_scales(p_base, p_std, p_judge, torch.tensor([bool(ex["correct"])]),
                                 torch.ones(1, n, dtype=torch.bool), spans, params=settings)
        if ex["correct"]:
            first, second = got.saliency, got.sub_saliency
            names = ("saliency", "sub-saliency")
        else:
            first = got.erroneous
            second = spans_to_mask(first, *spans) & ~first if spans is not None else torch.zeros_like(first)
            names = ("erroneous", "near-error")
        counts[names[0]] += int(first.sum())
        counts[names[1]] += int(second.sum())
        counts["irrelevant"] += n - int(first.sum()) - int(second.sum())
        counts["tokens"] += n
    return counts


def token_pieces(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The text each token adds to the decoded response, so that ``"".join(pieces) == decode(ids)``.

    Decoding token by token breaks characters split over several byte-level tokens; decoding growing
    prefixes gives each token the characters it completes (a token that completes none gets ``""``).
    """
    pieces: list[str] = []
    previous = ""
    for i in range(len(ids)):
        text = tokenizer.decode(list(ids[: i + 1]), skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if "\ufffd" in text[len(previous):] and i + 1 < len(ids):
            pieces.append("")  # an incomplete multi-byte character: the next token completes it
            continue
        pieces.append(text[len(previous):] if text.startswith(previous) else text)
        previous = text
    return pieces


def _round(values: Sequence[float]) -> list[float]:
    return [float(f"{v:.{PROB_DIGITS}g}") if math.isfinite(v) else 0.0 for v in values]


def compute_token_probs(
    model: Any,
    tokenizer: Any,
    records: Sequence[dict[str, Any]],
    *,
    config: Any = None,
    batch_size: int = 4,
    max_length: int | None = None,
    source: str = "records",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Per-token view probabilities and phrase spans of NLFT records, ready for the page.

    The model runs in eval mode under ``no_grad``; P_base and the hidden states come from the X_base
    view (:func:`nlft.method.logps.view_logps`), P_std and P_judge from the measurement views
    (:func:`nlft.train.trainer.measure_views`), with the prompt templates of ``config``. Over-long records
    lose the end of their output (``truncation="response"``).

    Args:
        model: a causal LM (a PEFT model works too).
        tokenizer: its tokenizer.
        records: NLFT records (``question``, ``reference``, ``output``, ``correct``, ``judgment``;
            ``id`` is kept when present). Every incorrect output needs a judgment.
        config: an :class:`nlft.train.config.NLFTConfig` (templates, ``phrase_threshold``,
            ``max_phrase_span``); None uses the defaults.
        batch_size: records per forward pass.
        max_length: prompt + output token limit (None: the config's, else 4096).
        source: the name shown in data errors (the file path).
        progress: show a progress bar.

    Returns:
        One dict per record: ``id``, ``correct``, ``question``, ``reference``, ``judgment``,
        ``tokens`` (T strings), ``p_base``, ``p_std`` (T floats), ``p_judge`` (T floats, or None for a
        correct output), ``spans`` = ``{"cosine": [lo, hi], "word": [lo, hi]}`` (T ints each, inclusive,
        0-based within the output).
    """
    import torch
    from tqdm.auto import tqdm

    from nlft.method.clustering import cosine_spans, word_spans
    from nlft.method.logps import IGNORE_INDEX, view_logps
    from nlft.train.config import NLFTConfig
    from nlft.train.trainer import NLFTCollator, measure_views
    from nlft.train.views import check_length, tokenize_record, training_prompt, validate_records
    from nlft.utils.models import ensure_pad_token

    if config is None:
        config = NLFTConfig(output_dir=str(Path.cwd() / "nlft-output"), report_to=[])
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    records = list(records)
    validate_records(records, source=source, needs_judgment=True)
    # X_base: the prompt the outputs were generated with (as the trainer resolves it)
    config.base_template, config.use_chat_template = training_prompt(
        records, template=config.base_template, use_chat_template=config.use_chat_template, source="train_dataset")
    ensure_pad_token(tokenizer)
    limit = max_length or config.max_length or 4096
    features = []
    for i, row in enumerate(records):
        tokens = tokenize_record(
            row, tokenizer, base_template=config.base_template, standard_template=config.standard_template,
            judge_template=config.judge_template, use_chat_template=config.use_chat_template,
            views=("standard", "judge"),
        )
        features.append({**check_length(tokens, i, limit, truncation="response", source=source), "row_idx": i})
    collate = NLFTCollator(tokenizer.pad_token_id, ("standard",), ("standard", "judge"))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    examples: list[dict[str, Any]] = []
    try:
        bar = tqdm(total=len(features), desc="saliency: view probabilities", unit="record", disable=not progress)
        for start in range(0, len(features), batch_size):
            feats = features[start : start + batch_size]
            batch = {k: v.to(device) for k, v in collate(feats).items()}
            mask = batch["labels"] != IGNORE_INDEX
            with torch.no_grad():
                logps, hidden = view_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                           return_hidden=True)
                p_std, p_judge = measure_views(model, batch)
            p_base = logps.exp().float().cpu()
            cos_lo, cos_hi = cosine_spans(hidden, mask, threshold=config.phrase_threshold,
                                          max_span=config.max_phrase_span)
            word_lo, word_hi = word_spans(batch["word_ids"])
            for j, feat in enumerate(feats):
                row = records[feat["row_idx"]]
                n = len(feat["response_ids"])
                examples.append({
                    "id": row.get("id", feat["row_idx"]),
                    "correct": bool(row["correct"]),
                    "question": row["question"],
                    "reference": row["reference"],
                    "judgment": row.get("judgment"),
                    "tokens": token_pieces(tokenizer, feat["response_ids"]),
                    "p_base": _round(p_base[j, :n].tolist()),
                    "p_std": _round(p_std[j, :n].float().cpu().tolist()),
                    "p_judge": None if row["correct"] else _round(p_judge[j, :n].float().cpu().tolist()),
                    "spans": {
                        "cosine": [cos_lo[j, :n].tolist(), cos_hi[j, :n].tolist()],
                        "word": [word_lo[j, :n].tolist(), word_hi[j, :n].tolist()],
                    },
                })
            bar.update(len(feats))
        bar.close()
    finally:
        model.train(was_training)
    return examples


def render_page(examples: Sequence[dict[str, Any]], params: dict[str, Any] | None = None, *,
                title: str = "NLFT saliency map", meta: dict[str, Any] | None = None) -> str:
    """The self-contained HTML page (inline CSS and JavaScript, no network) of measured examples.

    Args:
        examples: dicts from :func:`compute_token_probs`.
        params: starting hyperparameters (:func:`page_params`); None uses the defaults.
        title: the page title.
        meta: free-form facts shown in the header (model, adapter, data file).
    """
    template = resources.files("nlft.report").joinpath("saliency_template.html").read_text(encoding="utf-8")
    payload = {"examples": list(examples), "params": params or page_params(), "meta": meta or {}}
    # Inside <script>, "</script>" or "<!--" in a model's output would end the block: escape every "<".
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    data = data.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return template.replace(TITLE_MARKER, html.escape(title)).replace(DATA_MARKER, data)


def write_page(path: str | Path, examples: Sequence[dict[str, Any]], params: dict[str, Any] | None = None, *,
               title: str = "NLFT saliency map", meta: dict[str, Any] | None = None) -> Path:
    """Render the page (:func:`render_page`) and write it atomically to ``path``; returns the path."""
    from nlft.utils.files import atomic_write_text

    path = Path(path)
    atomic_write_text(path, render_page(examples, params, title=title, meta=meta))
    return path


def saliency_map(
    model: Any,
    tokenizer: Any,
    records: Sequence[dict[str, Any]],
    out: str | Path,
    *,
    config: Any = None,
    batch_size: int = 4,
    source: str = "records",
    meta: dict[str, Any] | None = None,
    progress: bool = True,
    **param_overrides: Any,
) -> Path:
    """Measure ``records`` with ``model`` and write the saliency page to ``out``.

    ``param_overrides`` (e.g. ``p0_correct=0.9``) set the page's starting slider values on top of
    ``config``. Returns the written path.
    """
    examples = compute_token_probs(model, tokenizer, records, config=config, batch_size=batch_size, source=source,
                                   progress=progress)
    return write_page(out, examples, page_params(config, **param_overrides), meta=meta)


def saliency_file(data: str | Path, out: str | Path, *, model: str = "smollm2", adapter: str | None = None,
                  limit: int | None = None, batch_size: int = 4, dtype: str | None = None,
                  phrase_threshold: float | None = None, max_phrase_span: int | None = None,
                  **param_overrides: Any) -> tuple[Path, int]:
    """``nlft saliency`` as a library call: the page of the NLFT records in ``data`` under a model (and adapter).

    ``phrase_threshold``/``max_phrase_span`` (None: the defaults) decide the stored phrase spans;
    ``param_overrides`` set the page's starting values (see :func:`saliency_map`). Returns the page's
    path and the number of records shown. DataError on a missing file, folder or empty data.
    """
    from nlft.train.config import NLFTConfig
    from nlft.utils.files import DataError, read_jsonl
    from nlft.utils.models import load_model, load_tokenizer

    data = Path(data)
    if not data.exists():
        raise DataError("file not found", path=data)
    records = read_jsonl(data)
    if limit is not None:
        records = records[:limit]
    if not records:
        raise DataError("no records", path=data)
    overrides = {k: v for k, v in {"phrase_threshold": phrase_threshold,
                                   "max_phrase_span": max_phrase_span}.items() if v is not None}
    config = NLFTConfig(output_dir=str(Path(out).parent / "nlft-output"), report_to=[], **overrides)
    if adapter and not Path(adapter).is_dir():
        raise DataError("adapter folder not found (--adapter)", path=adapter)
    tokenizer = load_tokenizer(model)
    lm = load_model(model, dtype=dtype, adapter=adapter)
    meta = {"model": model, "adapter": adapter, "data": str(data)}
    page = saliency_map(lm, tokenizer, records, out, config=config, batch_size=batch_size, source=str(data),
                        meta=meta, **param_overrides)
    return page, len(records)
