"""Train an exported NLFT weights file (``nlft weights``) with TRL's ``SFTTrainer``.

Public as :mod:`nlft.integrations.trl`::

    from nlft.integrations.trl import NLFTWeightsTrainer
    trainer = NLFTWeightsTrainer("HuggingFaceTB/SmolLM2-135M-Instruct", train_dataset="weights.jsonl")
    trainer.train()

:class:`NLFTWeightsTrainer` is ``SFTTrainer`` with NLFT's loss: every response token's likelihood
(``-S log P``) or unlikelihood (``-S log(1 - P)``, from the logits, stably) weighted by its exported
scale, divided by the response tokens of the whole accumulated batch as :class:`~nlft.NLFTTrainer`
divides it. Everything else (LoRA through ``peft_config``, distributed launch, logging, checkpoints) is
TRL's. One step equals one step of ``NLFTTrainer(view_probs="cached", error_reference="initial")`` on the
same rows: the same loss and the same gradients.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from trl import SFTConfig, SFTTrainer

from nlft.method.logps import IGNORE_INDEX, selective_log_softmax
from nlft.method.loss import nlft_loss
from nlft.train.weights import UNLIKELIHOOD, read_weights

# The columns of a weights dataset, each a list over the whole sequence (prompt positions: -100 / 0 / False).
WEIGHT_COLUMNS = ("input_ids", "labels", "token_weights", "unlikelihood")


def weights_rows(path: str | os.PathLike) -> list[dict[str, list]]:
    """The rows of a weights file (:func:`nlft.train.weights.read_weights`) as full sequences:
    ``input_ids`` = prompt + response, ``labels`` (-100 on the prompt), ``token_weights`` (0 on the prompt)
    and ``unlikelihood`` (False on the prompt), all of one length."""
    _, rows = read_weights(path)
    out = []
    for r in rows:
        pad = len(r["prompt_ids"])
        out.append({
            "input_ids": r["prompt_ids"] + r["response_ids"],
            "labels": [IGNORE_INDEX] * pad + r["response_ids"],
            "token_weights": [0.0] * pad + [float(s) for s in r["scales"]],
            "unlikelihood": [False] * pad + [loss == UNLIKELIHOOD for loss in r["loss"]],
        })
    return out


def weights_dataset(path: str | os.PathLike) -> Any:
    """:func:`weights_rows` as a ``datasets.Dataset``."""
    from datasets import Dataset

    return Dataset.from_list(weights_rows(path))


class WeightsCollator:
    """Right-pads rows of :data:`WEIGHT_COLUMNS` into ``(B, T)`` tensors, with ``attention_mask``."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        fill = {"input_ids": self.pad_token_id, "labels": IGNORE_INDEX, "token_weights": 0.0, "unlikelihood": False}
        dtype = {"input_ids": torch.long, "labels": torch.long, "token_weights": torch.float32,
                 "unlikelihood": torch.bool}
        batch = {key: torch.tensor([list(f[key]) + [value] * (width - len(f[key])) for f in features],
                                   dtype=dtype[key]) for key, value in fill.items()}
        batch["attention_mask"] = torch.tensor([[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"]))
                                                for f in features], dtype=torch.long)
        return batch


def weighted_token_loss(logits: torch.Tensor, labels: torch.Tensor, token_weights: torch.Tensor,
                        unlikelihood: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None, *,
                        return_logps: bool = False) -> Any:
    """NLFT's loss from a causal LM's logits and per-token weights (:func:`nlft.method.loss.nlft_loss`).

    Args:
        logits: ``(B, T, V)``; position t predicts token t + 1.
        labels: ``(B, T)`` the sequence's tokens, -100 where no loss is taken (prompt, padding).
        token_weights: ``(B, T)`` each token's scale (aligned with ``labels``).
        unlikelihood: ``(B, T)`` bool, the tokens trained with ``-log(1 - P)``.
        num_items_in_batch: the response tokens of the whole accumulated batch (None: this batch's).
        return_logps: also return ``log P`` ``(B, T - 1)`` of the predicted tokens and their mask.

    Returns:
        The scalar loss; with ``return_logps``, ``(loss, logps, mask)``.
    """
    labels, weights, ul = labels[:, 1:], token_weights[:, 1:], unlikelihood[:, 1:]
    mask = labels != IGNORE_INDEX
    logps, log1mp = selective_log_softmax(logits[:, :-1], labels.clamp(min=0), complement=True)
    loss = nlft_loss(logps, weights, ul & mask, mask, num_items_in_batch, log1mp)
    return (loss, logps, mask) if return_logps else loss


class NLFTWeightsTrainer(SFTTrainer):
    """``SFTTrainer`` on an ``nlft weights`` file, with NLFT's likelihood / unlikelihood loss.

    Args:
        model: a model or its name / path (as ``SFTTrainer`` takes it).
        args: an ``SFTConfig`` (default: ``output_dir="nlft-weights-output"``). The dataset is used as
            written (``skip_prepare_dataset``): rows longer than you can train should be cut when exporting
            (``nlft weights --max-length``).
        train_dataset, eval_dataset: a weights file's path, or a dataset of :data:`WEIGHT_COLUMNS`
            (:func:`weights_dataset`).
        processing_class: the tokenizer (loaded from the model's path when None); its pad token pads.
        peft_config, callbacks, ...: passed to ``SFTTrainer``.
    """

    _tag_names: ClassVar[list[str]] = ["trl", "sft", "nlft"]

    def __init__(self, model: Any, args: SFTConfig | None = None, train_dataset: Any = None,
                 eval_dataset: Any = None, processing_class: Any = None, **kwargs: Any) -> None:
        from nlft.utils.models import ensure_pad_token, load_tokenizer

        args = args or SFTConfig(output_dir="nlft-weights-output")
        args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}
        args.remove_unused_columns = False
        if processing_class is None:
            processing_class = load_tokenizer(model if isinstance(model, str) else model.config._name_or_path)
        ensure_pad_token(processing_class)
        if isinstance(train_dataset, str | Path):
            train_dataset = weights_dataset(train_dataset)
        if isinstance(eval_dataset, str | Path):
            eval_dataset = weights_dataset(eval_dataset)
        kwargs.setdefault("data_collator", WeightsCollator(processing_class.pad_token_id))
        super().__init__(model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, **kwargs)
        # The loss divides by the accumulated batch's response tokens itself (num_items_in_batch).
        self.model_accepts_loss_kwargs = True

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """``SFTTrainer.train``; then, if a :class:`~nlft.train.monitor.DriftMonitor` among the callbacks fired with
        ``action="restore"``, the checkpoint it chose is loaded (as :class:`~nlft.NLFTTrainer` does)."""
        from nlft.train.monitor import restore_before_drift

        result = super().train(*args, **kwargs)
        restore_before_drift(self)
        return result

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None) -> Any:
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
        weights = inputs["token_weights"]
        loss, logps, mask = weighted_token_loss(outputs.logits, inputs["labels"], weights, inputs["unlikelihood"],
                                                num_items_in_batch, return_logps=True)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # num_items_in_batch counts the tokens of every process; DDP averages gradients over processes.
            loss = loss * self.accelerator.num_processes
        # NLFTTrainer's metrics: the plain NLL of the outputs (what the drift monitor watches) and the scales
        n = mask.sum().clamp(min=1).item()
        nll = -(logps.detach() * mask)
        metrics = self._metrics["train" if model.training else "eval"]
        metrics["nlft/nll"].append(nll.sum().item() / n)
        metrics["nlft/weighted_nll"].append((nll * weights[:, 1:]).sum().item() / n)
        metrics["nlft/mean_scale"].append((weights[:, 1:] * mask).sum().item() / n)
        return (loss, outputs) if return_outputs else loss
