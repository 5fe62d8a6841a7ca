"""NLFTTrainer: a ``transformers.Trainer`` whose loss weights every output token by natural language."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import PreTrainedModel, Trainer, TrainerCallback

from nlft.clustering import cosine_spans, word_spans
from nlft.config import NLFTConfig
from nlft.io import DataError
from nlft.logps import IGNORE_INDEX, pad_views, view_logps
from nlft.loss import nlft_loss
from nlft.records import REQUIRED_FIELDS, check_length, tokenize_record, validate_records
from nlft.scales import batch_token_scales

STD, JUDGE = 0, 1
# P_std / P_judge of every training row ('cached' and 'per_epoch'), saved in each checkpoint.
VIEW_CACHE_FILE = "view_probs.pt"


class NLFTCollator:
    """Pads tokenized records into the base-view batch and, when asked, one batch of measurement views.

    The base view becomes ``input_ids`` / ``attention_mask`` ``(B, P + R)`` and ``labels`` ``(B, R)``
    (the response tokens, -100 on padding; see :mod:`nlft.logps` for the layout). The measurement
    views of all rows (X_standard, and X_judge for incorrect outputs) are stacked into one batch
    ``view_input_ids`` / ``view_attention_mask`` ``(V, P' + R)`` with ``view_row`` ``(V,)`` (the
    row each view belongs to) and ``view_kind`` ``(V,)`` (0 standard, 1 judge).
    """

    def __init__(self, pad_token_id: int, views_correct: Sequence[str] = ("standard",),
                 views_incorrect: Sequence[str] = ("standard", "judge")) -> None:
        self.pad_token_id = pad_token_id
        self.views_correct = tuple(views_correct)
        self.views_incorrect = tuple(views_incorrect)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        responses = [f["response_ids"] for f in features]
        base = pad_views([f["base_prompt_ids"] for f in features], responses, self.pad_token_id)
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
        prompts, view_resp, rows, kinds = [], [], [], []
        for i, f in enumerate(features):
            for view in self.views_correct if f["correct"] else self.views_incorrect:
                key, kind = ("std_prompt_ids", STD) if view == "standard" else ("judge_prompt_ids", JUDGE)
                prompts.append(f[key])
                view_resp.append(f["response_ids"])
                rows.append(i)
                kinds.append(kind)
        if prompts:
            views = pad_views(prompts, view_resp, self.pad_token_id)
            batch.update(
                view_input_ids=views["input_ids"], view_attention_mask=views["attention_mask"],
                view_labels=views["labels"], view_row=torch.tensor(rows), view_kind=torch.tensor(kinds),
            )
        return batch


def measure_views(model: Any, batch: dict[str, torch.Tensor], *, chunk_size: int | None = None
                  ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """P_std and P_judge of each response token from the measurement views of a collated batch.

    The views run in eval mode (no dropout) under ``no_grad``: they are measurements, with no graph.

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
            parts = [view_logps(model, ids[s : s + step], att[s : s + step], labels[s : s + step])[0]
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


class NLFTTrainer(Trainer):
    """Trainer for Natural Language Fine-Tuning (and the CUT / plain-likelihood losses on the same machinery).

    Args:
        model: a causal LM, or a name / path loaded with :func:`nlft.models.load_model`.
        args: an :class:`NLFTConfig`.
        train_dataset: a ``datasets.Dataset`` (or list of dicts) with columns ``question``,
            ``reference``, ``output``, ``correct`` (bool) and ``judgment`` (str or None).
        eval_dataset: the same schema, optional.
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
        from nlft.models import load_model, load_tokenizer

        if args is None:
            args = NLFTConfig(output_dir="nlft-output")
        if isinstance(model, str):
            model = load_model(model)
        if processing_class is None:
            processing_class = load_tokenizer(model.config._name_or_path)
        if processing_class.pad_token_id is None:
            processing_class.pad_token = processing_class.eos_token
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        self._max_length = args.max_length or self._default_max_length(model, processing_class)
        train_dataset = self._prepare_dataset(train_dataset, processing_class, args, "train_dataset")
        if eval_dataset is not None:
            eval_dataset = self._prepare_dataset(eval_dataset, processing_class, args, "eval_dataset")
        views_correct, views_incorrect = args.needed_views
        if args.view_probs != "dynamic":
            views_correct, views_incorrect = (), ()
        collator = NLFTCollator(processing_class.pad_token_id, views_correct, views_incorrect)
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
        self._resume_dir: str | None = None
        self._cache_from_resume = False
        if args.view_probs != "dynamic" and args.loss_type != "nll":
            self.add_callback(_ViewCacheCallback(self))
        from nlft.monitor import DriftMonitor  # on by default; a DriftMonitor in `callbacks` sets its options

        if not any(isinstance(cb, DriftMonitor) for cb in self.callback_handler.callbacks):
            self.add_callback(DriftMonitor())

    # ---- data ------------------------------------------------------------------------------------

    @staticmethod
    def _default_max_length(model: Any, tokenizer: Any) -> int:
        limits = [getattr(model.config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
        limits = [x for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
        return min([*limits, 4096])

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
            dataset = Dataset.from_list(dataset)
        views_correct, views_incorrect = args.needed_views
        views = tuple(dict.fromkeys(views_correct + views_incorrect))
        max_length, truncation = self._max_length, args.truncation

        def tokenize(row: dict[str, Any], idx: int) -> dict[str, Any]:
            tokens = tokenize_record(
                row, tokenizer, base_template=args.base_template, standard_template=args.standard_template,
                judge_template=args.judge_template, use_chat_template=args.use_chat_template, views=views,
            )
            tokens = check_length(tokens, idx, max_length, truncation=truncation, source=name)
            return {**tokens, "row_idx": idx, "length": len(tokens["base_prompt_ids"]) + len(tokens["response_ids"])}

        # A list comprehension rather than Dataset.map: errors surface with their row, and nothing is cached
        # under a fingerprint that depends on the tokenizer's pickling.
        return Dataset.from_list([tokenize(dataset[i], i) for i in range(len(dataset))])

    # ---- view probabilities ----------------------------------------------------------------------

    def fill_view_cache(self) -> None:
        """Compute P_std and P_judge of every training row with the current model, into the cache."""
        args: NLFTConfig = self.args
        views_correct, views_incorrect = args.needed_views
        collate = NLFTCollator(self.processing_class.pad_token_id, views_correct, views_incorrect)
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
            p_std, p_judge = measure_views(model, batch, chunk_size=args.view_batch_size)
            rows = batch["row_idx"].cpu()
            width = batch["labels"].shape[1]
            for key, p in (("std", p_std), ("judge", p_judge)):
                if p is not None:
                    cache[key][rows, :width] = p.float().cpu()
        self._view_cache = cache

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any) -> Any:
        """``Trainer.train``; remembers the checkpoint resumed from, to reload its view-probability cache."""
        self._resume_dir = None
        if resume_from_checkpoint:
            if isinstance(resume_from_checkpoint, bool):
                from transformers.trainer_utils import get_last_checkpoint

                self._resume_dir = get_last_checkpoint(self.args.output_dir)
            else:
                self._resume_dir = str(resume_from_checkpoint)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        # The cache goes into the checkpoint folder before the Trainer writes trainer_state.json, the file
        # that marks a checkpoint complete.
        if self._view_cache is not None:
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            if self.is_world_process_zero():
                tmp = folder / f"{VIEW_CACHE_FILE}.tmp"
                torch.save(self._view_cache, tmp)
                os.replace(tmp, folder / VIEW_CACHE_FILE)
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

    def _view_probs(self, model: Any, inputs: dict[str, torch.Tensor]
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.args.loss_type == "nll":
            return None, None
        if self.args.view_probs == "dynamic" or self._view_cache is None:
            return measure_views(self.accelerator.unwrap_model(model), inputs, chunk_size=self.args.view_batch_size)
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
        p_std, p_judge = self._view_probs(model, inputs)
        want_hidden = args.loss_type == "nlft" and args.phrase_rule == "cosine"
        logps, hidden = view_logps(model, inputs["input_ids"], inputs["attention_mask"], labels,
                                   return_hidden=want_hidden)
        p_base = logps.detach().exp()
        spans = None
        if args.loss_type == "nlft" and args.phrase_rule == "cosine":
            spans = cosine_spans(hidden, response_mask, threshold=args.phrase_threshold,
                                 max_span=args.max_phrase_span)
        elif args.loss_type == "nlft" and args.phrase_rule == "word":
            spans = word_spans(inputs["word_ids"])
        correct = inputs["correct"].to(torch.bool)
        if args.loss_type == "nlft" and p_std is None:
            p_std = torch.zeros_like(p_base)
        if args.loss_type == "cut" and p_judge is None:  # a batch of correct outputs only: no judge view
            p_judge = torch.zeros_like(p_base)
        ts = batch_token_scales(
            p_base, p_std, p_judge, correct, response_mask, spans, loss_type=args.loss_type,
            p0_correct=args.p0_correct, c1=args.c1, c2=args.c2, c3=args.c3, r0=args.r0,
            p0_incorrect=args.p0_incorrect, irrelevant=args.irrelevant_incorrect,
            max_error_fraction=args.max_error_fraction, cut_threshold=args.cut_threshold,
        )
        loss = nlft_loss(logps, ts.scales, ts.unlikelihood, response_mask, num_items_in_batch)
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

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = {k: sum(v) / len(v) for k, v in self._metrics[mode].items() if v}
        if mode == "eval":
            metrics = {f"eval_{k}": v for k, v in metrics.items()}
        logs = {**logs, **metrics}
        super().log(logs, start_time)
        self._metrics[mode].clear()
