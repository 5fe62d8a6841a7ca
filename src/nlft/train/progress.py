"""Training logs: one progress line on the console, and metrics gathered from every process.

:class:`TrainProgress` replaces transformers' progress bar and its printed log dicts with one line,
``train: 12/30 [00:41<01:02, loss 0.412, saliency 31%, erroneous 8%]`` (step, loss, the NLFT token
shares, the time left); :func:`use_progress_line` swaps it into a trainer unless ``--verbose``.

:func:`gather_metric_means` averages per-step metric lists over every process of a distributed run
(each process holds the values of its own batches), so that ``log_history.jsonl``, TensorBoard and
the other loggers of the main process see the whole run's means, not process 0's.
"""

from __future__ import annotations

import sys
from typing import Any

from transformers import TrainerCallback

# log key -> (label, format) shown on the training line, in this order
SHOWN = (
    ("loss", "loss", "{:.4g}"),
    ("nlft/saliency_share", "saliency", "{:.0%}"),
    ("nlft/erroneous_share", "erroneous", "{:.0%}"),
    ("reward", "reward", "{:.3g}"),
)


def format_logs(logs: dict[str, Any]) -> str:
    """The training line's postfix for one log entry: ``loss 0.412, saliency 31%, erroneous 8%``."""
    parts = []
    for key, label, fmt in SHOWN:
        value = logs.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{label} {fmt.format(value)}")
    return ", ".join(parts)


class TrainProgress(TrainerCallback):
    """One tqdm bar over the optimiser steps; its postfix shows the last logged loss and token shares."""

    def __init__(self, label: str = "train") -> None:
        self.label = label
        self.bar: Any = None
        self.shown: dict[str, Any] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=state.max_steps or None, initial=state.global_step, desc=self.label, unit="step",
                        file=sys.stderr, dynamic_ncols=True)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self.bar is None or not logs:
            return
        self.shown.update({k: logs[k] for k, _, _ in SHOWN if k in logs})
        self.bar.set_postfix_str(format_logs(self.shown), refresh=True)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def use_progress_line(trainer: Any, label: str = "train", *, progress: bool = True) -> Any:
    """Swap transformers' progress bar and printed dicts for :class:`TrainProgress` (kept with ``--verbose``).

    ``progress=False`` (``--no-progress``) shows no bar at all: the logs still go to the run directory.
    """
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from nlft.utils.console import verbose

    if not verbose():
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
        if progress:
            trainer.add_callback(TrainProgress(label))
    return trainer


def gather_metric_means(metrics: dict[str, list[float]], accelerator: Any = None) -> dict[str, float]:
    """``{name: mean}`` of per-step metric lists, over every process when ``accelerator`` runs several.

    Every process must call it (it is a collective): each sends its sums and counts, and all get the
    means over all values of all processes. Names missing on a process (no incorrect row in its
    batches, say) are averaged over the processes that have them.
    """
    local = {k: [float(sum(v)), len(v)] for k, v in metrics.items() if v}
    parts = [local]
    if accelerator is not None and getattr(accelerator, "num_processes", 1) > 1:
        from accelerate.utils import gather_object

        parts = gather_object([local])
    totals: dict[str, list[float]] = {}
    for part in parts:
        for k, (total, count) in part.items():
            entry = totals.setdefault(k, [0.0, 0])
            entry[0] += total
            entry[1] += count
    return {k: total / count for k, (total, count) in sorted(totals.items())}
