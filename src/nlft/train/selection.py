"""Best-epoch selection on a validation set (``nlft train --keep best``), and the guard that keeps it apart.

:class:`BestEpochCallback` is the per-epoch evaluation of :class:`nlft.train.callbacks.EpochEvalCallback` that
also tracks the best epoch the way the Trainer does for ``metric_for_best_model``: it sets
``state.best_metric`` and ``state.best_global_step`` (saved in every checkpoint's
``trainer_state.json``, so a resumed run remembers them) and asks for a checkpoint at each new best,
which the Trainer's checkpoint rotation then keeps. The Trainer's own ``load_best_model_at_end``
needs ``eval_strategy`` to match ``save_strategy``, i.e. its loss-based evaluation loop; accuracy
here is measured by generation in a callback instead, so the command loads the best checkpoint
itself after training (:func:`load_best`).

The questions that choose the epoch are the run's validation set: they are written to
``<run>/validation.jsonl``, and ``nlft eval --run`` refuses to report accuracy on any of them
(:func:`check_not_validation`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nlft.train.callbacks import EpochEvalCallback
from nlft.train.rundir import EVAL_HISTORY
from nlft.utils.files import DataError, atomic_write_jsonl, read_jsonl

VALIDATION = "validation.jsonl"
BEST_METRICS = ("accuracy_strict", "accuracy_flexible")


class BestEpochCallback(EpochEvalCallback):
    """Accuracy along training (see :class:`~nlft.train.callbacks.EpochEvalCallback`) plus best-evaluation tracking.

    The metric is ``args.metric_for_best_model`` (``accuracy_strict`` or ``accuracy_flexible``,
    with or without the ``eval_`` prefix), higher is better; a tie keeps the earlier evaluation.
    """

    def after_measure(self, args: Any, state: Any, control: Any) -> None:
        value = self.last[metric_name(args.metric_for_best_model)]
        if state.best_metric is None or value > state.best_metric:
            state.best_metric = value
            state.best_global_step = state.global_step
            control.should_save = True  # the checkpoint of this evaluation is the one to keep


def metric_name(metric: str | None) -> str:
    """``accuracy_strict`` from ``eval_accuracy_strict`` or ``accuracy_strict``; ValueError for anything else."""
    name = (metric or "").removeprefix("eval_")
    if name not in BEST_METRICS:
        raise ValueError(f"metric_for_best_model {metric!r} is not valid; choose one of {', '.join(BEST_METRICS)}")
    return name


def kept_epoch(run_dir: str | os.PathLike, best_global_step: int | None, metric: str) -> dict[str, Any] | None:
    """The ``eval_history.jsonl`` entry of the kept epoch (the one evaluated at ``best_global_step``)."""
    path = Path(run_dir) / EVAL_HISTORY
    if best_global_step is None or not path.exists():
        return None
    entries = [e for e in read_jsonl(path, tolerate_torn_tail=True) if e.get("global_step") == best_global_step]
    if not entries:
        return None
    entry = entries[-1]
    return {"epoch": entry["epoch"], "global_step": best_global_step, "metric": metric,
            "value": entry[metric], "n": entry.get("n"), "validation": VALIDATION}


def load_best(trainer: Any) -> bool:
    """Load the best checkpoint's weights into ``trainer.model``, as ``load_best_model_at_end`` would.

    Returns False when no best checkpoint was recorded (no epoch was evaluated).
    """
    best = trainer.state.best_model_checkpoint
    if best is None or not Path(best).is_dir():
        return False
    trainer._load_best_model()
    return True


def write_validation(run_dir: str | os.PathLike, rows: list[dict[str, Any]], *, source: str) -> Path:
    """Write the validation questions (``id``, ``question``, ``gold``, ``source``) to ``<run>/validation.jsonl``."""
    from nlft.eval.accuracy import eval_rows

    path = Path(run_dir) / VALIDATION
    atomic_write_jsonl(path, [{**r, "source": source} for r in eval_rows(rows, source=source)])
    return path


def check_validation_source(data: str, split: str) -> None:
    """Refuse the test split of a named dataset (not a file) as the validation set of ``--keep best``."""
    if not Path(data).is_file() and split == "test":
        raise DataError(
            "--keep best chooses the epoch on the --eval-data questions, so they cannot be the test questions "
            "that reports use: give --eval-split validation (reasoning-gym tasks draw a separate set; for gsm8k a "
            "validation.jsonl in --eval-data-dir) or --eval-data FILE", field="eval_split")


def check_not_validation(run_dir: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Raise DataError when evaluation questions include the run's validation questions (``validation.jsonl``)."""
    path = Path(run_dir) / VALIDATION
    if not path.exists():
        return
    held = {r["question"].strip() for r in read_jsonl(path)}
    shared = [r for r in rows if str(r.get("question", "")).strip() in held]
    if shared:
        raise DataError(
            f"{len(shared)} of these {len(rows)} questions chose the run's kept epoch ({path}); report accuracy "
            f"on other questions (e.g. the test split)", path=run_dir)


def _run_data(run_dir: str | os.PathLike) -> Path | None:
    """The training data file a run's manifest names, where it still exists."""
    import json

    from nlft.train.rundir import MANIFEST

    path = Path(run_dir) / MANIFEST
    try:
        data = (json.loads(path.read_text(encoding="utf-8")).get("data") or {}).get("path")
    except (OSError, ValueError):
        return None
    return Path(data) if data and Path(data).is_file() else None


def check_not_trained(run_dir: str | os.PathLike, rows: list[dict[str, Any]], source: str | None = None) -> None:
    """Raise DataError when evaluation questions include questions the run trained on (the training data its
    manifest names), matched by question text, and by question id when ``source`` (the evaluation's dataset) is the
    dataset the training questions were read from (ids such as ``questions-3`` only mean one question there)."""
    data = _run_data(run_dir)
    if data is None:
        return
    trained = read_jsonl(data)
    texts = {str(r.get("question", "")).strip() for r in trained}
    ids: set[str] = set()
    origin = (data_source(run_dir) or {}).get("dataset")
    if source is not None and origin is not None and (
            source == origin or (Path(source).is_file() and Path(source).resolve() == Path(origin).resolve())):
        ids = {str(r.get("question_id", r.get("id"))) for r in trained}
    shared = [r for r in rows if str(r.get("id")) in ids or str(r.get("question", "")).strip() in texts]
    if shared:
        raise DataError(f"{len(shared)} of these {len(rows)} questions were trained on ({data}; the first: "
                        f"{shared[0]['id']}); evaluate held-out questions (--split test, --offset, --split-fractions) "
                        "or give --allow-trained", path=run_dir)


def data_source(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The settings ``nlft prepare`` read the run's training questions with (``args.json`` beside the training
    data the manifest names), or None when the run does not say."""
    import json

    data = _run_data(run_dir)
    args = data.parent / "args.json" if data is not None else None
    if args is None or not args.is_file():
        return None
    try:
        values = json.loads(args.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return values if isinstance(values, dict) and values.get("dataset") else None


def announce(kept: dict[str, Any], last: dict[str, Any] | None) -> str:
    """The end-of-run line about the kept epoch."""
    line = (f"kept epoch {kept['epoch']:g} (step {kept['global_step']}): validation {kept['metric']} "
            f"{kept['value']:.2%} on {kept['n']} questions ({VALIDATION})")
    if last is not None and last.get("global_step") != kept["global_step"]:
        line += f"; the last epoch ({last['epoch']:g}) had {last[kept['metric']]:.2%}"
    return line


def last_eval(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(run_dir) / EVAL_HISTORY
    rows = read_jsonl(path, tolerate_torn_tail=True) if path.exists() else []
    return rows[-1] if rows else None
