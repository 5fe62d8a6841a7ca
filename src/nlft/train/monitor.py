"""The drift monitor: warns (or stops training) when the model walks away from its own outputs.

NLFT trains on the model's own outputs, so the plain NLL of those outputs under the base prompt,
``nlft/nll`` in the trainer's logs, starts low. In a collapsing run it climbs while the weighted loss
being optimised keeps falling: the unlikelihood term lowers the erroneous tokens by moving the
whole distribution away from the outputs (docs/method.md, "Drift monitor"). :func:`drift` measures
that rise on a list of logged dicts (``TrainerState.log_history`` or a run's ``log_history.jsonl``);
:class:`DriftMonitor` is the callback that applies it while training.

The measure: the baseline is the mean ``nlft/nll`` over the first epoch's log entries; the current
value is the mean over the trailing quarter of an epoch (as many entries as a quarter of the first
epoch's); the monitor fires at the first entry after the first epoch where current / baseline exceeds
``factor``. The erroneous share (``nlft/erroneous_share``) is measured the same way and reported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

from transformers import TrainerCallback

NLL_KEY = "nlft/nll"
SHARE_KEY = "nlft/erroneous_share"
# Measured on the study's logs (docs/method.md, "Why 1.5"): the healthy cell's ratio peaks at 0.89, the
# collapsed one's passes 1.8 at epoch 1.6 and 2.6 at epoch 1.7. 1.5 sits between, with room on both sides.
DEFAULT_FACTOR = 1.5
# restore: stop and go back to the last checkpoint saved before the drift (or the best one on validation
# questions, with --keep best); stop: stop and keep the weights reached; warn: one line, train on; off.
ACTIONS = ("restore", "stop", "warn", "off")
DEFAULT_ACTION = "restore"


class DriftReport(NamedTuple):
    """What :func:`drift` found. Ratios are current / baseline; ``step`` and ``epoch`` locate the firing."""

    fired: bool
    factor: float
    baseline_nll: float | None = None
    nll: float | None = None
    nll_ratio: float | None = None
    max_nll_ratio: float | None = None
    baseline_share: float | None = None
    share: float | None = None
    share_ratio: float | None = None
    step: int | None = None
    epoch: float | None = None

    def message(self) -> str:
        """The warning, in one line."""
        share = ""
        if self.baseline_share is not None and self.share is not None:
            share = f"; erroneous share of incorrect outputs {self.baseline_share:.3f} -> {self.share:.3f}"
        return (f"drift monitor: at epoch {self.epoch:.2f} (step {self.step}) the NLL of the training outputs "
                f"(nlft/nll) is {self.nll_ratio:.2f}x its first-epoch value ({self.baseline_nll:.3f} -> "
                f"{self.nll:.3f}, limit {self.factor:g}x){share}: the model is moving away from its own training "
                f"outputs, as in the study's runs whose held-out accuracy collapsed; keep an earlier epoch "
                f"(--keep best) or lower the learning rate")

    def as_dict(self) -> dict[str, Any]:
        return self._asdict()


def _series(history: Sequence[dict[str, Any]], key: str) -> list[tuple[float, int, float]]:
    """``(epoch, step, value)`` of the entries with a number under ``key`` (training entries only)."""
    out = []
    for row in history:
        value, epoch = row.get(key), row.get("epoch")
        if isinstance(value, (int, float)) and isinstance(epoch, (int, float)) and value == value:
            out.append((float(epoch), int(row.get("step", 0)), float(value)))
    return out


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def drift(history: Sequence[dict[str, Any]], factor: float = DEFAULT_FACTOR) -> DriftReport:
    """Replay logged entries and report whether (and where first) ``nlft/nll`` rose past ``factor`` x its first epoch.

    Args:
        history: the logged dicts in order, each with ``epoch`` (fractional, as the Trainer logs it),
            ``step`` and ``nlft/nll`` (entries without it, e.g. the final summary, are skipped).
        factor: the firing threshold on current / baseline.

    Returns:
        A :class:`DriftReport`. Until an entry past the first epoch is logged there is no baseline
        and nothing fires. When it fired, ``nll`` / ``share`` are the values where it fired; else
        the latest ones. ``max_nll_ratio`` is the highest ratio seen.
    """
    nll = _series(history, NLL_KEY)
    first = [v for e, _, v in nll if e <= 1.0 + 1e-9]
    later = [(i, e, s) for i, (e, s, _) in enumerate(nll) if e > 1.0 + 1e-9]
    if not first or not later:
        return DriftReport(False, factor)
    base = _mean(first)
    window = max(1, len(first) // 4)
    share = _series(history, SHARE_KEY)
    share_first = [v for e, _, v in share if e <= 1.0 + 1e-9]
    base_share = _mean(share_first)
    share_window = max(1, len(share_first) // 4)

    def share_at(step: int) -> float | None:
        upto = [v for _, s, v in share if s <= step]
        return _mean(upto[-share_window:])

    best = 0.0
    for i, epoch, step in later:
        current = _mean([v for _, _, v in nll[max(0, i - window + 1): i + 1]])
        ratio = current / base if base > 0 else float("inf")
        best = max(best, ratio)
        if ratio > factor:
            cur_share = share_at(step)
            return DriftReport(True, factor, base, current, ratio, best, base_share, cur_share,
                               cur_share / base_share if cur_share is not None and base_share else None, step, epoch)
    i, epoch, step = later[-1]
    cur_share = share_at(step)
    return DriftReport(False, factor, base, current, ratio, best, base_share, cur_share,
                       cur_share / base_share if cur_share is not None and base_share else None, step, epoch)


class DriftMonitor(TrainerCallback):
    """Applies :func:`drift` to ``state.log_history`` at every log; warns once, stops, or stops and restores.

    Args:
        factor: the firing threshold (default :data:`DEFAULT_FACTOR`).
        action: ``"restore"`` (default) ends training cleanly and marks the last checkpoint saved before
            the firing step as the one to keep (``state.best_model_checkpoint``, which the Trainer's
            checkpoint rotation never deletes; with ``--keep best`` the best checkpoint on validation
            questions stays the one kept); :class:`nlft.train.trainer.NLFTTrainer` loads it when
            training ends. ``"stop"`` ends training and keeps the weights reached; ``"warn"`` prints one
            line to stderr; ``"off"`` does nothing.

    After training, ``report`` holds the last :class:`DriftReport`, ``stopped`` whether it ended the
    run and ``restore_checkpoint`` the folder restored (None when none was saved before the drift: the
    weights are then those reached at the stop). A resumed run replays the restored log history, so it
    fires again at once if it fired before the checkpoint.
    """

    def __init__(self, factor: float = DEFAULT_FACTOR, action: str = DEFAULT_ACTION) -> None:
        if action not in ACTIONS:
            raise ValueError(f"drift action {action!r} is not valid; choose one of {', '.join(ACTIONS)}")
        if factor <= 1.0:
            raise ValueError(f"drift factor must be above 1 (a rise), got {factor}")
        self.factor = factor
        self.action = action
        self.report: DriftReport | None = None
        self.stopped = False
        self.restore_checkpoint: str | None = None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self.action == "off" or (self.report is not None and self.report.fired):
            return
        if not logs or NLL_KEY not in logs:
            return
        self.report = drift(state.log_history, self.factor)
        if not self.report.fired:
            return
        if self.action == "restore":
            self.restore_checkpoint = _restore_target(args, state, self.report.step)
        if state.is_world_process_zero:
            print(self.report.message() + _action_note(self.action, self.restore_checkpoint), file=sys.stderr,
                  flush=True)
        if self.action in ("stop", "restore"):
            control.should_training_stop = True
            self.stopped = True

    def summary(self) -> dict[str, Any]:
        """The monitor's settings and findings, for a run's manifest."""
        report = self.report.as_dict() if self.report is not None else {"fired": False}
        restored = None
        if self.restore_checkpoint is not None:
            from pathlib import Path

            restored = Path(self.restore_checkpoint).name
        return {**report, "factor": self.factor, "action": self.action, "stopped": self.stopped,
                "restored": restored}


def restore_before_drift(trainer: Any) -> None:
    """After ``trainer.train()``: load the checkpoint its :class:`DriftMonitor` chose to restore, if it fired.

    The Trainer's own best-model loader reads it (adapters, sharded and full weights).
    """
    from pathlib import Path

    monitor = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, DriftMonitor)), None)
    if monitor is not None and monitor.restore_checkpoint and Path(monitor.restore_checkpoint).is_dir():
        trainer.state.best_model_checkpoint = monitor.restore_checkpoint
        trainer._load_best_model()


def _restore_target(args: Any, state: Any, step: int | None) -> str | None:
    """The checkpoint to go back to: the best one where ``--keep best`` tracks one, else the last saved before ``step``.

    The latter is recorded as ``state.best_model_checkpoint``, so that the rotation keeps it and the Trainer's own
    loader can bring it back.
    """
    from pathlib import Path

    if getattr(args, "metric_for_best_model", None) and state.best_model_checkpoint:
        return state.best_model_checkpoint
    saved = []
    for folder in Path(args.output_dir).glob("checkpoint-*"):
        suffix = folder.name.rsplit("-", 1)[-1]
        if suffix.isdigit() and (step is None or int(suffix) < step) and (folder / "trainer_state.json").exists():
            saved.append((int(suffix), str(folder)))
    if not saved:
        return None
    state.best_model_checkpoint = max(saved)[1]
    return state.best_model_checkpoint


def _action_note(action: str, restore: str | None) -> str:
    if action == "stop":
        return " (stopping: --drift-action stop)"
    if action == "restore":
        from pathlib import Path

        return (f" (stopping and restoring {Path(restore).name}, the last checkpoint before the drift; "
                "--drift-action warn trains on)" if restore else
                " (stopping; no checkpoint was saved before the drift, so the weights are those reached now; "
                "--drift-action warn trains on)")
    return ""
