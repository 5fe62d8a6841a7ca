"""Trainer callbacks of a run directory: accuracy along training (``eval/epoch-N`` or ``eval/step-N``,
``eval_history.jsonl``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from nlft.train.rundir import EVAL_KEYS, append_eval_history


class EpochEvalCallback(TrainerCallback):
    """Accuracy with :func:`nlft.eval.accuracy.evaluate` after every epoch (``<run>/eval/epoch-N``), or every
    ``every_steps`` optimiser steps and after the last step (``<run>/eval/step-N``).

    Each evaluation is appended to ``eval_history.jsonl`` (``epoch``, ``global_step``,
    ``accuracy_strict``, ``ci95_strict``, ``accuracy_flexible``, ``ci95_flexible``, ``n``) and kept in
    ``self.last``. ``eval_kwargs`` go to :func:`~nlft.eval.accuracy.evaluate`
    (batch_size, max_new_tokens, temperature, seed, template, ...).

    ``merge_adapter=True`` generates with a merged copy of a PEFT model (LoRA folded into the
    weights: faster decoding, and the same weights ``nlft eval`` would use), leaving the model being
    trained untouched; the copy costs the model's memory once more while it lives.
    """

    def __init__(self, run_dir: str | os.PathLike, tokenizer: Any, rows: list[dict[str, Any]], *,
                 merge_adapter: bool = False, every_steps: int | None = None, **eval_kwargs: Any) -> None:
        if every_steps is not None and every_steps < 1:
            raise ValueError(f"every_steps must be at least 1, got {every_steps}")
        self.run_dir = Path(run_dir)
        self.tokenizer = tokenizer
        self.rows = rows
        self.merge_adapter = merge_adapter
        self.every_steps = every_steps
        self.eval_kwargs = eval_kwargs
        self.last: dict[str, Any] | None = None

    def on_epoch_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.every_steps is None:
            self._measure(args, state, control, model, f"epoch-{round(state.epoch or 0.0, 2):g}")

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        step = state.global_step
        if self.every_steps is not None and (step % self.every_steps == 0 or step == state.max_steps):
            self._measure(args, state, control, model, f"step-{step}")

    def _measure(self, args: Any, state: Any, control: Any, model: Any, name: str) -> None:
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
            metrics = evaluate(eval_model, self.tokenizer, self.rows, out_dir=self.run_dir / "eval" / name,
                               progress=False, **self.eval_kwargs)
        finally:
            del eval_model
            model.train(was_training)
        self.last = {"global_step": state.global_step, **{k: metrics[k] for k in EVAL_KEYS}}
        append_eval_history(self.run_dir, epoch, self.last)
        where = f"epoch {epoch:g}" if self.every_steps is None else f"step {state.global_step} (epoch {epoch:g})"
        print(f"{where}: accuracy strict {metrics['accuracy_strict']:.2%}, flexible "
              f"{metrics['accuracy_flexible']:.2%} (n={metrics['n']})", file=sys.stderr)
        self.after_measure(args, state, control)

    def after_measure(self, args: Any, state: Any, control: Any) -> None:
        """Called after each evaluation, with ``self.last`` set (for subclasses)."""
