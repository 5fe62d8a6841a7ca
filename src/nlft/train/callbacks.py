"""Trainer callbacks of a run directory: accuracy after every epoch (``eval/epoch-N``, ``eval_history.jsonl``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from nlft.train.rundir import EVAL_KEYS, append_eval_history


class EpochEvalCallback(TrainerCallback):
    """After every epoch: accuracy with :func:`nlft.eval.accuracy.evaluate` into ``<run>/eval/epoch-N``.

    Each evaluation is appended to ``eval_history.jsonl`` (``epoch``, ``global_step``,
    ``accuracy_strict``, ``ci95_strict``, ``accuracy_flexible``, ``ci95_flexible``, ``n``) and kept in
    ``self.last``. ``eval_kwargs`` go to :func:`~nlft.eval.accuracy.evaluate`
    (batch_size, max_new_tokens, temperature, seed, template, ...).

    ``merge_adapter=True`` generates with a merged copy of a PEFT model (LoRA folded into the
    weights: faster decoding, and the same weights ``nlft eval`` would use), leaving the model being
    trained untouched; the copy costs the model's memory once more while it lives.
    """

    def __init__(self, run_dir: str | os.PathLike, tokenizer: Any, rows: list[dict[str, Any]], *,
                 merge_adapter: bool = False, **eval_kwargs: Any) -> None:
        self.run_dir = Path(run_dir)
        self.tokenizer = tokenizer
        self.rows = rows
        self.merge_adapter = merge_adapter
        self.eval_kwargs = eval_kwargs
        self.last: dict[str, Any] | None = None

    def on_epoch_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        from nlft.eval.accuracy import evaluate

        epoch = round(state.epoch or 0.0, 2)
        was_training = model.training
        eval_model = model
        if self.merge_adapter and hasattr(model, "merge_and_unload"):
            import copy

            import torch

            with torch.no_grad():
                eval_model = copy.deepcopy(model).merge_and_unload()
        try:
            metrics = evaluate(eval_model, self.tokenizer, self.rows,
                               out_dir=self.run_dir / "eval" / f"epoch-{epoch:g}", progress=False, **self.eval_kwargs)
        finally:
            del eval_model
            model.train(was_training)
        self.last = {"global_step": state.global_step, **{k: metrics[k] for k in EVAL_KEYS}}
        append_eval_history(self.run_dir, epoch, self.last)
        print(f"epoch {epoch:g}: accuracy strict {metrics['accuracy_strict']:.2%}, flexible "
              f"{metrics['accuracy_flexible']:.2%} (n={metrics['n']})", file=sys.stderr)
