"""NLFTTrainer: a ``transformers.Trainer`` whose loss weights every output token by natural language."""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import PreTrainedModel, Trainer, TrainerCallback

from nlft.method.clustering import cosine_spans, word_spans
from nlft.method.logps import (
    IGNORE_INDEX,
    PrefixKV,
    common_prefix,
    pad_views,
    shared_prefix_kv,
    supports_packing,
    supports_shared_prefix,
    unwrap_model,
    view_logps,
)
from nlft.method.loss import cut_loss, kl_penalty, nlft_loss, token_mean
from nlft.method.scales import TokenScales, batch_token_scales, class_balance_weights, class_counts
from nlft.train.config import NLFTConfig
from nlft.train.views import REQUIRED_FIELDS, check_length, tokenize_record, training_prompt, validate_records
from nlft.utils.files import DataError

STD, JUDGE = 0, 1
# P_std / P_judge of every training row ('cached' and 'per_epoch'), saved in each checkpoint.
VIEW_CACHE_FILE = "view_probs.pt"
# log P_base of every training row under the initial model (KL anchor, 'initial' error reference).
INITIAL_LOGPS_FILE = "initial_logps.pt"
# The same for the rows of the trainer's eval dataset(s): {name: per-row lists}.
EVAL_INITIAL_LOGPS_FILE = "eval_initial_logps.pt"
# The column of an eval dataset that holds each row's log P_base under the initial model.
INITIAL_COLUMN = "initial_logps"


class NLFTCollator:
    """Pads tokenized records into the base-view batch and, when asked, one batch of measurement views.

    The base view becomes ``input_ids`` / ``attention_mask`` ``(B, P + R)`` and ``labels`` ``(B, R)``
    (the response tokens, -100 on padding; see :mod:`nlft.method.logps` for the layout). The measurement
    views of all rows (X_standard, and X_judge for incorrect outputs) are stacked into one batch
    ``view_input_ids`` / ``view_attention_mask`` ``(V, P' + R)`` with ``view_row`` ``(V,)`` (the
    row each view belongs to) and ``view_kind`` ``(V,)`` (0 standard, 1 judge).

    ``share_prefix``: the token prefix that every prompt of the batch (base and measurement views)
    starts with, if at least ``min_prefix`` tokens, is cut from them all and returned once as
    ``prefix_ids`` ``(L,)``; :func:`nlft.method.logps.view_logps` runs it once per forward.

    Rows that carry their own ``initial_logps`` (evaluation rows, :meth:`NLFTTrainer.get_eval_dataloader`)
    give ``initial_logps`` ``(B, R)`` (0 on padding).
    """

    def __init__(self, pad_token_id: int, views_correct: Sequence[str] = ("standard",),
                 views_incorrect: Sequence[str] = ("standard", "judge"), *, share_prefix: bool = False,
                 min_prefix: int = 16) -> None:
        self.pad_token_id = pad_token_id
        self.views_correct = tuple(views_correct)
        self.views_incorrect = tuple(views_incorrect)
        self.share_prefix = share_prefix
        self.min_prefix = min_prefix

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        responses = [f["response_ids"] for f in features]
        base_prompts = [f["base_prompt_ids"] for f in features]
        prompts, view_resp, rows, kinds = [], [], [], []
        for i, f in enumerate(features):
            for view in self.views_correct if f["correct"] else self.views_incorrect:
                key, kind = ("std_prompt_ids", STD) if view == "standard" else ("judge_prompt_ids", JUDGE)
                prompts.append(f[key])
                view_resp.append(f["response_ids"])
                rows.append(i)
                kinds.append(kind)
        shared = common_prefix([*base_prompts, *prompts], min_tokens=self.min_prefix) if self.share_prefix else 0
        if shared:
            prefix = list(base_prompts[0][:shared])
            base_prompts = [p[shared:] for p in base_prompts]
            prompts = [p[shared:] for p in prompts]
        base = pad_views(base_prompts, responses, self.pad_token_id)
        r_max = base["labels"].shape[1]
        word_ids = torch.full((len(features), r_max), -1, dtype=torch.long)
        for i, f in enumerate(features):
            word_ids[i, : len(f["word_ids"])] = torch.tensor(f["word_ids"], dtype=torch.long)
        batch = {
            **base,
            "correct": torch.tensor([bool(f["correct"]) for f in features]),
            "row_idx": torch.tensor([int(f["row_idx"]) for f in features], dtype=torch.long),
            "word_ids": word_ids,
        }
        if shared:
            batch["prefix_ids"] = torch.tensor(prefix, dtype=torch.long)
        if INITIAL_COLUMN in features[0]:
            initial = torch.zeros(len(features), r_max)
            for i, f in enumerate(features):
                initial[i, : len(f[INITIAL_COLUMN])] = torch.tensor(f[INITIAL_COLUMN], dtype=torch.float32)
            batch[INITIAL_COLUMN] = initial
        if prompts:
            views = pad_views(prompts, view_resp, self.pad_token_id)
            batch.update(
                view_input_ids=views["input_ids"], view_attention_mask=views["attention_mask"],
                view_labels=views["labels"], view_row=torch.tensor(rows), view_kind=torch.tensor(kinds),
            )
        return batch


def measure_views(model: Any, batch: dict[str, torch.Tensor], *, chunk_size: int | None = None,
                  packed: bool = False, prefix_kv: PrefixKV | None = None
                  ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """P_std and P_judge of each response token from the measurement views of a collated batch.

    The views run in eval mode (no dropout) under ``no_grad``: they are measurements, with no graph.
    ``prefix_kv``: the batch's shared prefix already run in eval mode (by
    :meth:`NLFTTrainer.step_prefix`); without it the views run the prefix themselves.

    Returns:
        ``(p_std, p_judge)``, each ``(B, R)`` or None when no row had that view; rows without the
        view hold zeros.
    """
    if "view_input_ids" not in batch:
        return None, None
    bsz, r_max = batch["labels"].shape
    ids, att, labels = batch["view_input_ids"], batch["view_attention_mask"], batch["view_labels"]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            step = chunk_size or ids.shape[0]
            parts = [view_logps(model, ids[s : s + step], att[s : s + step], labels[s : s + step],
                                prefix_ids=batch.get("prefix_ids"), prefix_kv=prefix_kv, packed=packed)[0]
                     for s in range(0, ids.shape[0], step)]
    finally:
        model.train(was_training)
    probs = torch.cat(parts).exp()
    out: list[torch.Tensor | None] = []
    for kind in (STD, JUDGE):
        sel = batch["view_kind"] == kind
        if not bool(sel.any()):
            out.append(None)
            continue
        p = torch.zeros(bsz, r_max, device=probs.device, dtype=probs.dtype)
        p[batch["view_row"][sel], : probs.shape[1]] = probs[sel]
        out.append(p)
    return out[0], out[1]


def tokenize_records(rows: Any, tokenizer: Any, args: NLFTConfig, max_length: int, *, source: str = "dataset"
                     ) -> list[dict[str, Any]]:
    """Validated records tokenized into the views ``args`` needs (:func:`~nlft.train.views.tokenize_record`),
    with the length policy applied, each with its ``row_idx`` and ``length`` (base prompt + response tokens).

    ``args.base_template`` must be resolved (the trainer reads it from the records' provenance).
    """
    views_correct, views_incorrect = args.needed_views
    views = tuple(dict.fromkeys(views_correct + views_incorrect))
    out = []
    for i in range(len(rows)):
        tokens = tokenize_record(
            rows[i], tokenizer, base_template=args.base_template, standard_template=args.standard_template,
            judge_template=args.judge_template, use_chat_template=args.use_chat_template, views=views,
        )
        tokens = check_length(tokens, i, max_length, truncation=args.truncation, source=source)
        out.append({**tokens, "row_idx": i, "length": len(tokens["base_prompt_ids"]) + len(tokens["response_ids"])})
    return out


def measure_token_scales(model: Any, batch: dict[str, torch.Tensor], args: NLFTConfig, *,
                         views: tuple[torch.Tensor | None, torch.Tensor | None] | None = None
                         ) -> tuple[TokenScales, tuple[torch.Tensor, torch.Tensor] | None]:
    """Token scales of a collated batch under the current model, in eval mode without grad.

    P_base (the ratio's reference too: the model measured is the one the scales are taken under), the
    phrase spans (X_base's hidden states for the cosine rule) and, unless ``views`` gives them, P_std and
    P_judge from the batch's measurement views. What :meth:`NLFTTrainer.measure_token_classes` counts and
    :mod:`nlft.train.weights` writes: before training, the scales of the first step under
    ``view_probs="cached"`` and ``error_reference="initial"``.

    Args:
        views: ``(p_std, p_judge)`` ``(B, R)`` already measured (a cache or a server), or None.

    Returns:
        ``(scales, spans)``: :class:`~nlft.method.scales.TokenScales` ``(B, R)`` and the phrase spans
        (``(lo, hi)`` ``(B, R)``, None under the rule 'none').
    """
    mask = batch["labels"] != IGNORE_INDEX
    correct = batch["correct"].to(torch.bool)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            p_std, p_judge = views if views is not None else measure_views(
                model, batch, chunk_size=args.view_batch_size, packed=args.padding_free)
            logps, hidden = view_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                       return_hidden=args.phrase_rule == "cosine",
                                       prefix_ids=batch.get("prefix_ids"), packed=args.padding_free)[:2]
    finally:
        model.train(was_training)
    spans = (cosine_spans(hidden, mask, threshold=args.phrase_threshold, max_span=args.max_phrase_span)
             if args.phrase_rule == "cosine" else word_spans(batch["word_ids"])
             if args.phrase_rule == "word" else None)
    p_base = logps.exp()
    ts = batch_token_scales(p_base, p_std if p_std is not None else torch.zeros_like(p_base), p_judge,
                            correct, mask, spans, params=args.scale_params)
    return ts, spans


class _ViewCacheCallback(TrainerCallback):
    """Fills the trainer's view-probability cache before training ('cached') or every epoch ('per_epoch').

    A run resumed from a checkpoint reloads the cache saved in it instead, so that the resumed run
    trains on the same view probabilities as an uninterrupted one.
    """

    def __init__(self, trainer: NLFTTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.trainer._load_view_cache_from_resume():
            return
        if args.view_probs == "cached" and self.trainer._view_cache is None:
            self.trainer.fill_view_cache()

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if args.view_probs != "per_epoch":
            return
        if self.trainer._cache_from_resume:
            self.trainer._cache_from_resume = False  # the epoch the checkpoint was taken in
            return
        self.trainer.fill_view_cache()


class _InitialLogpsCallback(TrainerCallback):
    """Computes log P_base of every training row before the first step, when the model is the initial one.

    A resumed run reloads them from its checkpoint instead (the model there is no longer initial).
    """

    def __init__(self, trainer: NLFTTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.trainer._initial_logps is None and not self.trainer._load_initial_logps_from_resume():
            self.trainer.fill_initial_logps()
        self.trainer._attach_eval_initial_logps()


def class_report_message(counts: dict[str, int], irrelevant: str) -> str:
    """The start-of-training line about what the data gives (:func:`~nlft.method.scales.class_counts`), with a warning
    when the incorrect outputs contribute nothing."""
    c = counts
    line = (f"nlft: token classes under the initial model: {c['correct_outputs']} correct outputs (saliency "
            f"{c['saliency']}, sub-saliency {c['sub_saliency']}, irrelevant {c['irrelevant_correct']} tokens); "
            f"{c['incorrect_outputs']} incorrect (erroneous {c['erroneous']}, near-error {c['near_error']}, "
            f"irrelevant {c['irrelevant_incorrect']} tokens); {c['incorrect_without_flag']} incorrect outputs have no "
            f"erroneous token, {c['incorrect_excluded']} are excluded as entirely wrong")
    if c["incorrect_outputs"] and c["incorrect_contributing_nothing"] == c["incorrect_outputs"]:
        line += (f"\nnlft: warning: none of the {c['incorrect_outputs']} incorrect outputs contributes to training "
                 f"(no erroneous token, and irrelevant_incorrect={irrelevant!r} gives the other tokens 0): this run "
                 "learns from the correct outputs only. Check that the judgments name what is wrong in the outputs' "
                 "own words (X_judge must make the wrong tokens likely), or lower r0")
    elif c["incorrect_contributing_nothing"]:
        line += f"; {c['incorrect_contributing_nothing']} contribute nothing to training"
    return line


CLASS_REPORT_FILE = "token_classes.json"


class _ClassReportCallback(TrainerCallback):
    """Before the first step: what the data gives, token classes under the initial model (not on a resumed run)."""

    def __init__(self, trainer: NLFTTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self.trainer._resume_dir:
            self.trainer.report_token_classes()


class NLFTTrainer(Trainer):
    """Trainer for Natural Language Fine-Tuning (and the CUT / plain-likelihood losses on the same machinery).

    Args:
        model: a causal LM, or a name / path loaded with :func:`nlft.utils.models.load_model`.
        args: an :class:`NLFTConfig`.
        train_dataset: a ``datasets.Dataset`` (or list of dicts) with columns ``question``,
            ``reference``, ``output``, ``correct`` (bool) and ``judgment`` (str or None).
        eval_dataset: the same schema (or a dict of such, by name), optional. Evaluation measures
            these rows themselves: their own views (whatever ``view_probs``) and, where the loss reads
            the initial model (``error_reference="initial"``, ``kl_coef``), their own log P_base under
            it, measured before the first step (:meth:`get_eval_dataloader`).
        processing_class: the tokenizer (loaded from the model's path when None).
        peft_config: a PEFT config (e.g. ``LoraConfig``); None trains the model as given.
        callbacks, optimizers, ...: passed to ``transformers.Trainer``.
    """

    _tag_names: ClassVar[list[str]] = ["nlft"]

    def __init__(
        self,
        model: PreTrainedModel | str,
        args: NLFTConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        peft_config: Any = None,
        callbacks: list[TrainerCallback] | None = None,
        **kwargs: Any,
    ) -> None:
        from nlft.utils.models import ensure_pad_token, load_model, load_tokenizer

        if args is None:
            args = NLFTConfig(output_dir="nlft-output")
        if isinstance(model, str):
            model = load_model(model)
        if processing_class is None:
            processing_class = load_tokenizer(model.config._name_or_path)
        ensure_pad_token(processing_class)
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        self._max_length = args.max_length or self._default_max_length(model, processing_class)
        self._resolve_prompt(args, train_dataset)
        train_dataset = self._prepare_dataset(train_dataset, processing_class, args, "train_dataset")
        if isinstance(eval_dataset, dict):
            eval_dataset = {name: self._prepare_dataset(rows, processing_class, args, f"eval_dataset[{name!r}]")
                            for name, rows in eval_dataset.items()}
        elif eval_dataset is not None:
            eval_dataset = self._prepare_dataset(eval_dataset, processing_class, args, "eval_dataset")
        views_correct, views_incorrect = args.needed_views
        self._share_prefix = self._can_share_prefix(args, model)
        self._check_packing(args, model)
        # Evaluation batches always carry the measurement views of their rows; training batches only when the
        # views are measured at every step (the caches hold the training rows' otherwise).
        self._eval_collator = NLFTCollator(processing_class.pad_token_id, views_correct, views_incorrect,
                                           share_prefix=self._share_prefix)
        if args.view_probs != "dynamic":
            views_correct, views_incorrect = (), ()
        collator = NLFTCollator(processing_class.pad_token_id, views_correct, views_incorrect,
                                share_prefix=self._share_prefix)
        super().__init__(
            model=model, args=args, data_collator=collator, train_dataset=train_dataset,
            eval_dataset=eval_dataset, processing_class=processing_class, callbacks=callbacks, **kwargs,
        )
        # The loss is normalised by the response tokens of the whole accumulated batch (num_items_in_batch,
        # counted from `labels`, which are already aligned with the predictions: no shift).
        self.model_accepts_loss_kwargs = True
        self._loss_shifts_labels = False
        self.loss_is_scaled_for_ga = True
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._view_cache: dict[str, torch.Tensor] | None = None
        self._initial_logps: torch.Tensor | None = None
        self._eval_initial: dict[str, list[list[float]]] = {}  # the named eval datasets' initial log P_base
        self._dropout: bool | None = None  # whether a training forward draws dropout (step_prefix)
        self._resume_dir: str | None = None
        self._cache_from_resume = False
        if args.view_probs != "dynamic" and args.loss_type == "nlft":
            self.add_callback(_ViewCacheCallback(self))
        if args.needs_initial_logps:
            self.add_callback(_InitialLogpsCallback(self))
        self.class_report: dict[str, Any] | None = None
        if args.loss_type == "nlft" and args.report_classes:
            self.add_callback(_ClassReportCallback(self))
        self._class_weights = (1.0, 1.0)
        if args.class_balance and train_dataset is not None:
            n_tokens = [0, 0]
            for ok, ids in zip(train_dataset["correct"], train_dataset["response_ids"]):
                n_tokens[0 if ok else 1] += len(ids)
            self._class_weights = class_balance_weights(*n_tokens)
        from nlft.train.monitor import DriftMonitor  # on by default; a DriftMonitor in `callbacks` sets its options

        if not any(isinstance(cb, DriftMonitor) for cb in self.callback_handler.callbacks):
            self.add_callback(DriftMonitor())

    # ---- data ------------------------------------------------------------------------------------

    @staticmethod
    def _can_share_prefix(args: NLFTConfig, model: Any) -> bool:
        """``args.share_prefix`` where the model allows it; a one-line notice where it does not."""
        if not args.share_prefix:
            return False
        why = ("gradient checkpointing keeps no key/value cache" if args.gradient_checkpointing
               else None if supports_shared_prefix(model) else f"{type(model).__name__} takes no key/value cache")
        if why:
            print(f"nlft: share_prefix off: {why}; every row runs its full prompt", file=sys.stderr)
            return False
        return True

    @staticmethod
    def _check_packing(args: NLFTConfig, model: Any) -> None:
        """``args.padding_free`` off, with a one-line notice, where the model's attention takes no packed mask."""
        if args.padding_free and not supports_packing(model):
            impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
            print(f"nlft: padding_free off: {type(model).__name__} ({impl} attention, or a sliding window) takes no "
                  "block-causal mask; rows run padded", file=sys.stderr)
            args.padding_free = False

    @staticmethod
    def _default_max_length(model: Any, tokenizer: Any) -> int:
        limits = [getattr(model.config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
        limits = [x for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
        return min([*limits, 4096])

    @staticmethod
    def _resolve_prompt(args: NLFTConfig, dataset: Any) -> None:
        """X_base's prompt: the one the records were generated with (provenance), else the paper's solve prompt.

        ``use_chat_template`` left at None follows the provenance too (a file generated without the
        chat template trains without it).
        """
        if args.base_template is not None:  # set explicitly: the records' prompts are not read
            return
        rows: Any = []
        if isinstance(dataset, list):
            rows = dataset
        elif dataset is not None and "provenance" in dataset.column_names:
            rows = [{"provenance": p} for p in dataset["provenance"]]
        args.base_template, args.use_chat_template = training_prompt(
            rows, use_chat_template=args.use_chat_template, source="train_dataset")

    def _prepare_dataset(self, dataset: Any, tokenizer: Any, args: NLFTConfig, name: str) -> Any:
        from datasets import Dataset

        if dataset is None:
            return None
        if not isinstance(dataset, list) and "response_ids" in dataset.column_names:  # already tokenized
            return dataset
        if not isinstance(dataset, list):
            missing = [c for c in REQUIRED_FIELDS if c not in dataset.column_names]
            if missing:
                have = ", ".join(dataset.column_names)
                raise DataError(f"missing column(s) {', '.join(missing)}; columns are {have}", path=name,
                                field=missing[0])
        # Validate before any conversion: Dataset.from_list would turn a missing key into None.
        validate_records(dataset, source=name, needs_judgment=args.loss_type in ("nlft", "cut"))
        if isinstance(dataset, list):
            # only the fields read here: extra columns (provenance, ...) need not share one Arrow schema
            dataset = Dataset.from_list([{k: row.get(k) for k in REQUIRED_FIELDS} for row in dataset])
        # A list rather than Dataset.map: errors surface with their row, and nothing is cached under a
        # fingerprint that depends on the tokenizer's pickling.
        return Dataset.from_list(tokenize_records(dataset, tokenizer, args, self._max_length, source=name))

    # ---- view probabilities ----------------------------------------------------------------------

    def fill_view_cache(self) -> None:
        """Compute P_std and P_judge of every training row with the current model, into the cache."""
        args: NLFTConfig = self.args
        views_correct, views_incorrect = args.needed_views
        collate = NLFTCollator(self.processing_class.pad_token_id, views_correct, views_incorrect,
                               share_prefix=self._share_prefix)
        dataset = self.train_dataset
        n = len(dataset)
        r_max = max(len(r) for r in dataset["response_ids"])
        cache = {"std": torch.zeros(n, r_max), "judge": torch.zeros(n, r_max)}
        model = self.accelerator.unwrap_model(self.model)
        device = next(model.parameters()).device
        step = args.view_batch_size or args.per_device_train_batch_size
        for start in range(0, n, step):
            feats = [dataset[i] for i in range(start, min(n, start + step))]
            batch = {k: v.to(device) for k, v in collate(feats).items()}
            p_std, p_judge = measure_views(model, batch, chunk_size=args.view_batch_size, packed=args.padding_free)
            rows = batch["row_idx"].cpu()
            width = batch["labels"].shape[1]
            for key, p in (("std", p_std), ("judge", p_judge)):
                if p is not None:
                    cache[key][rows, :width] = p.float().cpu()
        self._view_cache = cache

    def fill_initial_logps(self) -> None:
        """log P_base of every training row's response under the current (initial) model, into a cache.

        Shape ``(rows, R_max)``; one no-grad pass over the data in eval mode, before the first step.
        """
        self._initial_logps = self._base_logps(self.train_dataset)

    def _base_logps(self, dataset: Any) -> torch.Tensor:
        """log P_base ``(rows, R_max)`` of every row of a tokenized dataset under the current model (eval, no grad)."""
        args: NLFTConfig = self.args
        collate = NLFTCollator(self.processing_class.pad_token_id, (), (), share_prefix=self._share_prefix)
        n = len(dataset)
        cache = torch.zeros(n, max(len(r) for r in dataset["response_ids"]))
        model = self.accelerator.unwrap_model(self.model)
        device = next(model.parameters()).device
        step = args.view_batch_size or args.per_device_train_batch_size
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, n, step):
                    batch = collate([dataset[i] for i in range(start, min(n, start + step))])
                    batch = {k: v.to(device) for k, v in batch.items()}
                    logps, _ = view_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                          prefix_ids=batch.get("prefix_ids"), packed=args.padding_free)
                    cache[batch["row_idx"].cpu(), : logps.shape[1]] = logps.float().cpu()
        finally:
            model.train(was_training)
        return cache

    # ---- evaluation ----------------------------------------------------------------------------------

    def get_eval_dataloader(self, eval_dataset: Any = None) -> Any:
        """``Trainer.get_eval_dataloader`` over the eval rows measured as themselves (see :meth:`_eval_rows`)."""
        rows = self.eval_dataset[eval_dataset] if isinstance(eval_dataset, str) else (
            eval_dataset if eval_dataset is not None else self.eval_dataset)
        if rows is None or isinstance(rows, dict):  # the Trainer's own error, or its loop over the names
            return super().get_eval_dataloader(eval_dataset)
        # Trainer.evaluate() hands over the trainer's own eval dataset itself: found by identity, by its name
        own = self.eval_dataset if isinstance(self.eval_dataset, dict) else {"eval": self.eval_dataset}
        name = next((key for key, value in own.items() if value is rows), None)
        return self._eval_loader(super().get_eval_dataloader, self._eval_rows(rows, name))

    def get_test_dataloader(self, test_dataset: Any) -> Any:
        """``Trainer.get_test_dataloader`` (``predict``) over rows measured as themselves (see :meth:`_eval_rows`)."""
        return self._eval_loader(super().get_test_dataloader, self._eval_rows(test_dataset, None))

    def _eval_loader(self, make: Any, rows: Any) -> Any:
        collator, self.data_collator = self.data_collator, self._eval_collator
        try:
            return make(rows)
        finally:
            self.data_collator = collator

    def _eval_rows(self, rows: Any, name: str | None) -> Any:
        """Rows to evaluate, tokenized, measured as themselves rather than through the training caches.

        Their batches carry their own measurement views (whatever ``view_probs``: the caches hold the
        training rows'), and, where the loss reads the initial model, an ``initial_logps`` column: log
        P_base under the initial model, measured now if no step has been taken, else kept from before
        the first step (the trainer's eval datasets, by ``name``; also saved in checkpoints).
        """
        source = "eval_dataset" if name in (None, "eval") else f"eval_dataset[{name!r}]"
        rows = self._prepare_dataset(rows, self.processing_class, self.args, source)
        if not self.args.needs_initial_logps or INITIAL_COLUMN in rows.column_names:
            return rows
        if name in self._eval_initial:
            values = self._eval_initial[name]
        elif self.state.global_step == 0 and not self._resume_dir:  # the model is still the initial one
            logps = self._base_logps(rows)
            values = [logps[i, : len(r)].tolist() for i, r in enumerate(rows["response_ids"])]
        else:
            raise ValueError(
                "evaluating these rows needs their log-probabilities under the initial model (error_reference="
                "'initial' or kl_coef), which are measured before the first training step: give them to the "
                "trainer as eval_dataset (a dict for several sets), or evaluate them before training")
        if name is not None:
            self._eval_initial[name] = values
        rows = rows.add_column(INITIAL_COLUMN, values)
        if name is not None:
            self._set_eval_dataset(name, rows)
        return rows

    def _set_eval_dataset(self, name: str, rows: Any) -> None:
        if isinstance(self.eval_dataset, dict):
            self.eval_dataset[name] = rows
        elif name == "eval":
            self.eval_dataset = rows

    def _attach_eval_initial_logps(self) -> None:
        """Before the first step: the eval datasets' initial log P_base (reloaded from the checkpoint on resume)."""
        if self.eval_dataset is None:
            return
        if self._resume_dir and (Path(self._resume_dir) / EVAL_INITIAL_LOGPS_FILE).exists():
            self._eval_initial = torch.load(Path(self._resume_dir) / EVAL_INITIAL_LOGPS_FILE, weights_only=True)
        names = list(self.eval_dataset) if isinstance(self.eval_dataset, dict) else ["eval"]
        for name in names:
            rows = self.eval_dataset[name] if isinstance(self.eval_dataset, dict) else self.eval_dataset
            if name in self._eval_initial or not self._resume_dir:
                self._eval_rows(rows, name)

    def measure_token_classes(self) -> dict[str, int]:
        """Token classes of every training row under the current model (the initial one before training).

        One no-grad pass in eval mode: the views (or the view cache), the base view's log-probabilities and
        hidden states, the phrase spans and :func:`~nlft.method.scales.batch_token_scales` with this run's
        settings. Returns :func:`~nlft.method.scales.class_counts` summed over the data.
        """
        args: NLFTConfig = self.args
        views_correct, views_incorrect = args.needed_views
        collate = NLFTCollator(self.processing_class.pad_token_id, views_correct, views_incorrect,
                               share_prefix=self._share_prefix)
        dataset = self.train_dataset
        model = self.accelerator.unwrap_model(self.model)
        device = next(model.parameters()).device
        step = args.view_batch_size or args.per_device_train_batch_size
        totals: dict[str, int] = {}
        for start in range(0, len(dataset), step):
            batch = {k: v.to(device) for k, v in collate(
                [dataset[i] for i in range(start, min(len(dataset), start + step))]).items()}
            views = self._view_probs(model, batch) if self._view_cache is not None else None
            ts, spans = measure_token_scales(model, batch, args, views=views)
            mask = batch["labels"] != IGNORE_INDEX
            for key, value in class_counts(ts, batch["correct"].to(torch.bool), mask, spans,
                                           max_error_fraction=args.max_error_fraction).items():
                totals[key] = totals.get(key, 0) + value
        return totals

    def report_token_classes(self) -> dict[str, int]:
        """Measure :meth:`measure_token_classes`, keep it in ``self.class_report`` and say it in one line (and warn
        when the incorrect outputs add nothing to training)."""
        self.class_report = counts = self.measure_token_classes()
        if self.is_world_process_zero():
            print(class_report_message(counts, self.args.irrelevant_incorrect), file=sys.stderr, flush=True)
            if self.args.output_dir:  # a resumed run reads it back (it measures the initial model only once)
                from nlft.utils.files import atomic_write_json

                atomic_write_json(Path(self.args.output_dir) / CLASS_REPORT_FILE, counts)
        return counts

    def _load_initial_logps_from_resume(self) -> bool:
        if not self._resume_dir or not (Path(self._resume_dir) / INITIAL_LOGPS_FILE).exists():
            return False
        self._initial_logps = torch.load(Path(self._resume_dir) / INITIAL_LOGPS_FILE, weights_only=True)
        return True

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any) -> Any:
        """``Trainer.train``; remembers the checkpoint resumed from, to reload its view-probability cache."""
        self._resume_dir = None
        if resume_from_checkpoint:
            if isinstance(resume_from_checkpoint, bool):
                from transformers.trainer_utils import get_last_checkpoint

                self._resume_dir = get_last_checkpoint(self.args.output_dir)
            else:
                self._resume_dir = str(resume_from_checkpoint)
        result = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        from nlft.train.monitor import restore_before_drift

        restore_before_drift(self)
        return result

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        # The caches go into the checkpoint folder before the Trainer writes trainer_state.json, the file
        # that marks a checkpoint complete.
        for name, cache in ((VIEW_CACHE_FILE, self._view_cache), (INITIAL_LOGPS_FILE, self._initial_logps),
                            (EVAL_INITIAL_LOGPS_FILE, self._eval_initial or None)):
            if cache is None:
                continue
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            if self.is_world_process_zero():
                tmp = folder / f"{name}.tmp"
                torch.save(cache, tmp)
                os.replace(tmp, folder / name)
        super()._save_checkpoint(model, trial)

    def _load_view_cache_from_resume(self) -> bool:
        if not self._resume_dir:
            return False
        path = Path(self._resume_dir) / VIEW_CACHE_FILE
        if not path.exists():
            return False
        self._view_cache = torch.load(path, weights_only=True)
        self._cache_from_resume = True
        return True

    def step_prefix(self, model: Any, inputs: dict[str, torch.Tensor]) -> tuple[PrefixKV | None, PrefixKV | None]:
        """The batch's shared prefix, run for every view of the step that continues from it: ``(measured, trained)``.

        The measurement views read it as they read the rest of their rows, in eval mode (no dropout) and
        without grad; the base view (and CUT's judgment view) continue from it with gradients flowing
        back into its computation and, in training, with the model's dropout, as their full rows would
        have it: the same loss and gradients in expectation over dropout (the batch's rows share one
        draw of it at the prefix positions, where full rows draw one each), and equal to float rounding
        without dropout. So where the model draws no dropout (eval mode, dropout 0) one computation, in
        eval mode, serves both; where it does, the trained views get the prefix in train mode and the
        measurement views (if the batch has any) a second, no-grad run in eval mode. ``(None, None)``
        without a shared prefix; None where the model's cache cannot be shared (the views then run
        their prefix themselves).
        """
        if "prefix_ids" not in inputs:
            return None, None
        prefix = inputs["prefix_ids"]
        # Outside a DDP wrapper, whose every forward may broadcast buffers (a collective each process must call
        # as often as the others, whatever its batch): the base view's forward through the wrapper prepares the
        # gradient reduction for its whole graph, the prefix's computation included.
        model = unwrap_model(model)
        if not (model.training and self._draws_dropout(model)):
            kv = shared_prefix_kv(model, prefix, eval_mode=True)
            return kv, kv
        trained = shared_prefix_kv(model, prefix)
        measured = None
        if "view_input_ids" in inputs and self.args.loss_type == "nlft":  # CUT's judgment view is trained
            with torch.no_grad():
                measured = shared_prefix_kv(model, prefix, eval_mode=True)
        return measured, trained

    def _draws_dropout(self, model: Any) -> bool:
        """Whether a training forward of ``model`` draws dropout (a Dropout module or a config rate above 0)."""
        if self._dropout is None:
            model = unwrap_model(model)
            modules = any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())
            config = getattr(model, "config", None)
            rates = config.to_dict().items() if hasattr(config, "to_dict") else ()
            self._dropout = modules or any("dropout" in k and isinstance(v, float) and v > 0 for k, v in rates)
        return self._dropout

    def _view_probs(self, model: Any, inputs: dict[str, torch.Tensor], prefix_kv: PrefixKV | None = None
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.args.loss_type == "nll":
            return None, None
        if "view_input_ids" in inputs:  # a batch with its views: every step ('dynamic'), and evaluation
            return measure_views(self.accelerator.unwrap_model(model), inputs, chunk_size=self.args.view_batch_size,
                                 packed=self.args.padding_free, prefix_kv=prefix_kv)
        if self._view_cache is None:
            raise RuntimeError(f"view_probs={self.args.view_probs!r}: the training rows' view probabilities are "
                               "measured when train() starts")
        rows = inputs["row_idx"].cpu()
        width = inputs["labels"].shape[1]
        device = inputs["labels"].device
        p_std = self._view_cache["std"][rows, :width].to(device)
        p_judge = self._view_cache["judge"][rows, :width].to(device)
        return p_std, p_judge

    # ---- loss ------------------------------------------------------------------------------------

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        args: NLFTConfig = self.args
        labels = inputs["labels"]
        response_mask = labels != IGNORE_INDEX
        correct = inputs["correct"].to(torch.bool)
        if args.loss_type == "cut":
            loss, ts, logps = self._cut_loss(model, inputs, response_mask, correct, num_items_in_batch)
        else:
            loss, ts, logps = self._nlft_loss(model, inputs, response_mask, correct, num_items_in_batch)
        if args.nll_coef:
            plain = torch.ones_like(ts.scales) * correct[:, None]
            loss = loss + args.nll_coef * nlft_loss(logps, plain, torch.zeros_like(response_mask), response_mask,
                                                    num_items_in_batch)
        loss = loss * args.loss_multiplier
        if args.average_tokens_across_devices and num_items_in_batch is not None and self.accelerator.num_processes > 1:
            # num_items_in_batch counts the tokens of every process; DDP averages gradients over processes.
            loss = loss * self.accelerator.num_processes

        self._record_metrics(logps.detach(), ts, response_mask, correct, model.training)
        if return_outputs:
            return loss, {"logps": logps.detach(), "token_scales": ts.scales}
        return loss

    def _nlft_loss(self, model: Any, inputs: dict[str, torch.Tensor], response_mask: torch.Tensor,
                   correct: torch.Tensor, num_items_in_batch: Any) -> tuple[torch.Tensor, TokenScales, torch.Tensor]:
        """Eq. 5 (``loss_type`` nlft or nll) with the options of :class:`NLFTConfig`; ``(loss, scales, logps)``."""
        args: NLFTConfig = self.args
        nlft = args.loss_type == "nlft"
        measured_kv, prefix_kv = self.step_prefix(model, inputs)
        p_std, p_judge = self._view_probs(model, inputs, measured_kv)
        want_hidden = nlft and args.phrase_rule == "cosine"
        # log(1 - P) from the logits only where unlikelihood can occur
        need_ul = nlft and bool((~correct).any())
        out = view_logps(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"],
                         return_hidden=want_hidden, complement=need_ul, prefix_ids=inputs.get("prefix_ids"),
                         prefix_kv=prefix_kv, packed=args.padding_free)
        logps, hidden = out[0], out[1]
        log1mp = out[2] if need_ul else None
        p_base = logps.detach().exp()
        initial = self._initial_logps_of(inputs) if args.needs_initial_logps else None
        spans = None
        if want_hidden:
            spans = cosine_spans(hidden, response_mask, threshold=args.phrase_threshold,
                                 max_span=args.max_phrase_span)
        elif nlft and args.phrase_rule == "word":
            spans = word_spans(inputs["word_ids"])
        if nlft and p_std is None:
            p_std = torch.zeros_like(p_base)
        p_ratio = initial.exp() if initial is not None and args.error_reference == "initial" else p_base
        ts = batch_token_scales(p_ratio, p_std, p_judge, correct, response_mask, spans, loss_type=args.loss_type,
                                params=args.scale_params)
        if args.class_balance:
            w_c, w_i = self._class_weights
            ts = ts._replace(scales=ts.scales * torch.where(correct, w_c, w_i)[:, None].to(ts.scales.dtype))
        loss = nlft_loss(logps, ts.scales, ts.unlikelihood, response_mask, num_items_in_batch, log1mp)
        if args.kl_coef and initial is not None:
            anchored = response_mask & ~correct[:, None] & ~ts.unlikelihood
            loss = loss + args.kl_coef * token_mean(kl_penalty(logps, initial), anchored, response_mask,
                                                    num_items_in_batch)
        return loss, ts, logps

    def _cut_loss(self, model: Any, inputs: dict[str, torch.Tensor], response_mask: torch.Tensor,
                  correct: torch.Tensor, num_items_in_batch: Any) -> tuple[torch.Tensor, TokenScales, torch.Tensor]:
        """CUT as published (:func:`nlft.method.loss.cut_loss`): X_base and X_judge both with gradients."""
        args: NLFTConfig = self.args
        need_ul = bool((~correct).any())
        prefix, (_, prefix_kv) = inputs.get("prefix_ids"), self.step_prefix(model, inputs)
        out = view_logps(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"], complement=need_ul,
                         prefix_ids=prefix, prefix_kv=prefix_kv, packed=args.padding_free)
        logps, log1mp = out[0], (out[2] if need_ul else None)
        judge = torch.zeros_like(logps)
        if "view_input_ids" in inputs:  # the collator builds X_judge for the incorrect rows only
            view_lp, _ = view_logps(model, inputs["view_input_ids"], inputs["view_attention_mask"],
                                    inputs["view_labels"], prefix_ids=prefix, prefix_kv=prefix_kv,
                                    packed=args.padding_free)
            view_lp = torch.nn.functional.pad(view_lp, (0, logps.shape[1] - view_lp.shape[1]))
            judge = judge.index_put((inputs["view_row"],), view_lp)
        loss, selected = cut_loss(logps, log1mp, judge, correct, response_mask, num_items_in_batch,
                                  threshold=args.cut_threshold, weight_unlike=args.unlikelihood_weight,
                                  per_example=args.cut_normalisation == "example")
        false = torch.zeros_like(selected)
        ts = TokenScales(response_mask.float(), selected, false, false, selected)
        return loss, ts, logps

    def _get_num_items_in_batch(self, batch_samples: list, device: Any) -> Any:
        """The items the loss is divided by: response tokens, or for CUT averaged per output the rows.

        Every row has a first response token (its EOS at least), so counting the first label column of
        each batch counts rows, with the Trainer's own sum over the accumulated batches and processes.
        """
        if self.args.loss_type == "cut" and self.args.cut_normalisation == "example":
            batch_samples = [{"labels": batch["labels"][:, :1]} for batch in batch_samples]
        return super()._get_num_items_in_batch(batch_samples, device)

    def _initial_logps_of(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if INITIAL_COLUMN in inputs:  # evaluation rows carry their own
            return inputs[INITIAL_COLUMN]
        if self._initial_logps is None:
            raise RuntimeError("the initial model's log-probabilities are computed at the start of train()")
        width = inputs["labels"].shape[1]
        return self._initial_logps[inputs["row_idx"].cpu(), :width].to(inputs["labels"].device)

    # ---- metrics -----------------------------------------------------------------------------------

    def _record_metrics(self, logps: torch.Tensor, ts: Any, response_mask: torch.Tensor, correct: torch.Tensor,
                        training: bool) -> None:
        mode = "train" if training else "eval"
        m = self._metrics[mode]
        mask = response_mask
        n = mask.sum().clamp(min=1).float()
        rows_c = correct[:, None] & mask
        rows_i = ~correct[:, None] & mask
        nll = (-logps * mask).sum() / n
        m["nlft/nll"].append(nll.item())
        m["nlft/weighted_nll"].append(((-logps * ts.scales) * mask).sum().item() / n.item())
        m["nlft/mean_scale"].append((ts.scales * mask).sum().item() / n.item())
        if bool(rows_c.any()):
            nc = rows_c.sum().float()
            m["nlft/saliency_share"].append((ts.saliency & rows_c).sum().item() / nc.item())
            m["nlft/sub_saliency_share"].append((ts.sub_saliency & rows_c).sum().item() / nc.item())
        if bool(rows_i.any()):
            m["nlft/erroneous_share"].append((ts.erroneous & rows_i).sum().item() / rows_i.sum().item())
            err = ts.erroneous & rows_i
            if bool(err.any()):  # the collapse signature: P_base of flagged tokens falls while their scales rise
                m["nlft/erroneous_p_base"].append(logps[err].exp().mean().item())
                m["nlft/erroneous_scale"].append(ts.scales[err].mean().item())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        from nlft.train.progress import gather_metric_means

        # means over every process's batches (a collective: every process calls log)
        metrics = gather_metric_means(self._metrics[mode], self.accelerator)
        if mode == "eval":
            metrics = {f"eval_{k}": v for k, v in metrics.items()}
        logs = {**logs, **metrics}
        super().log(logs, start_time)
        self._metrics[mode].clear()
