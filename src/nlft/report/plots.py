"""Pictures and summaries of run directories: training curves, token-class shares, accuracy, comparisons.

A run directory (see :mod:`nlft.train.rundir`) may hold ``log_history.jsonl`` (Trainer log entries: ``step``,
``epoch``, ``loss``, ``nlft/mean_scale``, ``nlft/saliency_share``, ``nlft/sub_saliency_share``,
``nlft/erroneous_share`` ...), ``eval_history.jsonl`` (``epoch``, ``accuracy_strict`` ...),
``manifest.json`` (``method``, per-epoch ``wall_time_s`` and ``peak_memory_bytes``,
``train_wall_time_s``) and ``metrics.json`` (final evaluation). Every piece is optional: what is
missing is left out of the plots and shown as "-" in tables. Plots use matplotlib's ``Figure``
directly (Agg canvas, no pyplot state), so they work headless and in threads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LOSS_PNG = "plot_loss.png"
SCALES_PNG = "plot_token_classes.png"
ACCURACY_PNG = "plot_accuracy.png"
SHARES = (("nlft/saliency_share", "saliency (correct)"), ("nlft/sub_saliency_share", "sub-saliency (correct)"),
          ("nlft/erroneous_share", "erroneous (incorrect)"))
ACCURACY_KEYS = ("accuracy_strict", "eval_accuracy_strict", "accuracy")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from nlft.utils.files import read_jsonl

    return read_jsonl(path, tolerate_torn_tail=True) if path.exists() else []


def _read_json(path: Path) -> dict[str, Any]:
    from nlft.utils.files import DataError

    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"malformed JSON ({err.msg} at line {err.lineno})", path=path) from None
    return data if isinstance(data, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def series(rows: Sequence[dict[str, Any]], key: str, x: str = "step") -> tuple[list[float], list[float]]:
    """``(xs, ys)`` of the rows that have a finite number under both ``x`` and ``key``, in file order."""
    xs, ys = [], []
    for row in rows:
        a, b = _number(row.get(x)), _number(row.get(key))
        if a is not None and b is not None:
            xs.append(a)
            ys.append(b)
    return xs, ys


def _accuracy_key(rows: Sequence[dict[str, Any]]) -> str | None:
    return next((k for k in ACCURACY_KEYS if any(_number(r.get(k)) is not None for r in rows)), None)


def _figure(ncols: int = 1, width: float = 6.4) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, 4.0), dpi=110, layout="constrained")
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def _epoch_marks(ax: Any, log: Sequence[dict[str, Any]]) -> None:
    """Faint vertical lines at the steps where a new epoch starts."""
    steps, epochs = series(log, "epoch")
    last = 0
    for step, epoch in zip(steps, epochs):
        if math.floor(epoch + 1e-6) > last:
            last = math.floor(epoch + 1e-6)
            ax.axvline(step, color="0.6", lw=0.8, ls=":", zorder=0)


def run_title(run: Path, manifest: dict[str, Any] | None = None) -> str:
    """What a run is, for a plot's title: its method and training data (``NLFT on nlft-train.jsonl, 48 rows``), the
    folder's name only where the manifest does not say."""
    manifest = _read_json(run / "manifest.json") if manifest is None else manifest
    method = manifest.get("method")
    data = manifest.get("data") if isinstance(manifest.get("data"), dict) else {}
    if not method:
        return run.name
    what = str(method).upper()
    if data.get("path"):
        rows = f", {data['rows']} rows" if data.get("rows") is not None else ""
        what += f" on {Path(str(data['path'])).name}{rows}"
    return what


def class_series(log: Sequence[dict[str, Any]]) -> tuple[list[float], list[tuple[str, list[float]]]]:
    """The steps of the training log and, per token class, its share of the response tokens at each step (NaN at a
    step whose batches had no output of that kind, so that a line breaks there instead of joining its neighbours).

    The five classes: saliency, sub-saliency and the other tokens of correct outputs (shares of their tokens);
    erroneous and the other tokens of incorrect outputs (shares of theirs).
    """
    rows = [r for r in log if _number(r.get("step")) is not None
            and any(_number(r.get(k)) is not None for k in ("nlft/mean_scale", *(k for k, _ in SHARES)))]
    steps = [float(r["step"]) for r in rows]

    def value(row: dict[str, Any], key: str) -> float:
        v = _number(row.get(key))
        return math.nan if v is None else v

    sal = [value(r, "nlft/saliency_share") for r in rows]
    sub = [value(r, "nlft/sub_saliency_share") for r in rows]
    err = [value(r, "nlft/erroneous_share") for r in rows]
    classes = [("saliency (correct)", sal), ("sub-saliency (correct)", sub),
               ("other tokens (correct)", [1 - a - b for a, b in zip(sal, sub)]),
               ("erroneous (incorrect)", err), ("other tokens (incorrect)", [1 - e for e in err])]
    return steps, [(label, ys) for label, ys in classes if any(not math.isnan(y) for y in ys)]


def run_figures(run_dir: str | Path) -> dict[str, Any]:
    """The figures of one run by file name (``plot_loss.png``, ``plot_token_classes.png``, ``plot_accuracy.png``),
    each only where the run has its data. Titles name the method and the data (:func:`run_title`)."""
    run = Path(run_dir)
    log = _read_jsonl(run / "log_history.jsonl")
    evals = _read_jsonl(run / "eval_history.jsonl")
    title = run_title(run)
    figures: dict[str, Any] = {}

    xs, ys = series(log, "loss")
    if xs:
        fig, (ax,) = _figure()
        ax.plot(xs, ys, color="#2563eb", lw=1.6, marker="." if len(xs) < 60 else None, label="training loss")
        ex, ey = series(log, "eval_loss")
        if ex:
            ax.plot(ex, ey, color="#dc2626", lw=1.6, marker="o", label="evaluation loss")
        _epoch_marks(ax, log)
        ax.set(xlabel="step (dotted: a new epoch)", ylabel="loss", title=f"Training loss: {title}")
        ax.legend(frameon=False)
        figures[LOSS_PNG] = fig

    mean = series(log, "nlft/mean_scale")
    steps, classes = class_series(log)
    if mean[0] or classes:
        fig, (ax1, ax2) = _figure(2, width=5.2)
        if mean[0]:
            ax1.plot(*mean, color="#7c3aed", lw=1.6, marker="." if len(mean[0]) < 60 else None)
        ax1.set(xlabel="step", ylabel="mean token scale S", title="Mean NLFT scale")
        styles = {"saliency (correct)": ("#16a34a", "-"), "sub-saliency (correct)": ("#2563eb", "-"),
                  "other tokens (correct)": ("#9ca3af", "-"), "erroneous (incorrect)": ("#dc2626", "--"),
                  "other tokens (incorrect)": ("#f59e0b", "--")}
        for label, ys in classes:
            colour, style = styles[label]
            ax2.plot(steps, [100 * v for v in ys], color=colour, ls=style, lw=1.6, label=label,
                     marker="." if len(steps) < 60 else None)
        ax2.set(xlabel="step", ylabel="% of the outputs' tokens", title="Token classes", ylim=(0, 100))
        if classes:
            ax2.legend(frameon=False, fontsize="small")
        for ax in (ax1, ax2):
            _epoch_marks(ax, log)
        fig.suptitle(title)
        figures[SCALES_PNG] = fig

    key = _accuracy_key(evals)
    if key is not None:
        fig, (ax,) = _figure()
        # flexible accuracy (the answer read wherever it is stated) is the one to read: drawn first and bold
        curves = [("accuracy_flexible", "#16a34a", "-", 2.2), (key, "#2563eb", "--", 1.4)] \
            if key == "accuracy_strict" else [(key, "#16a34a", "-", 2.2)]
        for k, colour, style, width in curves:
            ex, ey = series(evals, k, x="epoch")
            if ex:
                ax.plot(ex, [100 * v for v in ey], color=colour, ls=style, lw=width, marker="o",
                        label=k.replace("_", " "))
        epochs = series(evals, key, x="epoch")[0]
        for epoch in range(1, math.ceil(max(epochs, default=0)) + 1):
            ax.axvline(epoch, color="0.6", lw=0.8, ls=":", zorder=0)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", ylabel="accuracy (%)", title=f"Accuracy: {title}")
        ax.set_ylim(bottom=0)
        ax.legend(frameon=False)
        figures[ACCURACY_PNG] = fig
    return figures


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """PNG plots of one run: training loss, mean scale and token-class shares per step, accuracy per epoch.

    Args:
        run_dir: the run directory (reads ``log_history.jsonl``, ``eval_history.jsonl``, ``manifest.json``).
        out_dir: where the PNGs go (default: ``run_dir``).

    Returns:
        The written files, among ``plot_loss.png``, ``plot_token_classes.png`` and
        ``plot_accuracy.png``; a plot without data is not written.
    """
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [_save(fig, out / name) for name, fig in run_figures(run_dir).items()]


def try_plot_run(run_dir: str | Path) -> tuple[list[Path], Exception | None]:
    """:func:`plot_run`, never raising: a plot must never lose a finished training. ``(paths, error)``."""
    try:
        return plot_run(run_dir), None
    except Exception as err:
        return [], err


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path)
    return path


def summarize_run(run_dir: str | Path) -> dict[str, Any]:
    """The comparison facts of one run; a missing fact is None.

    Returns a dict with ``run`` (folder name), ``method``, ``final_loss`` (last logged training loss),
    ``accuracy`` (strict accuracy of ``metrics.json`` or ``eval/metrics.json``, else the manifest's
    metrics, else the last ``eval_history.jsonl`` entry), ``accuracy_strict`` and ``accuracy_flexible``
    (from the same place), ``ci95_strict`` and ``ci95_flexible`` (the intervals of ``metrics.json``, old
    single-``ci95`` files included), ``grading`` (how the training data's outputs were graded: the
    manifest's, else the data file's first record's), ``wall_time_s`` (training wall time),
    ``peak_memory_bytes`` (the largest per-epoch peak), ``drift`` (the manifest's drift monitor entry:
    fired, stopped, epoch, max_nll_ratio ...) and ``kept`` (the epoch ``--keep best`` kept).
    """
    run = Path(run_dir)
    manifest = _read_json(run / "manifest.json")
    metrics = _read_json(run / "metrics.json") or _read_json(run / "eval" / "metrics.json")
    log = _read_jsonl(run / "log_history.jsonl")
    evals = _read_jsonl(run / "eval_history.jsonl")

    method = manifest.get("method")
    if method is None and (run / "config.yaml").exists():
        import yaml

        try:
            config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
        except yaml.YAMLError:
            config = None
        if isinstance(config, dict):
            method = config.get("method") or config.get("loss_type")

    losses = series(log, "loss")[1]
    final_loss = losses[-1] if losses else None
    if final_loss is None:
        final_loss = next((_number(r.get("train_loss")) for r in reversed(log) if _number(r.get("train_loss"))), None)

    accuracy = None
    scores: dict[str, float | None] = {"accuracy_strict": None, "accuracy_flexible": None}
    for source in (metrics, manifest.get("metrics") or {}):
        accuracy = next((_number(source.get(k)) for k in ACCURACY_KEYS if _number(source.get(k)) is not None), None)
        if accuracy is not None:
            scores = {k: _number(source.get(k)) if k in source else _number(source.get(f"eval_{k}"))
                      for k in scores}
            break
    if accuracy is None and (key := _accuracy_key(evals)):
        accuracy = series(evals, key, x="epoch")[1][-1]
        scores = {k: _number(evals[-1].get(k)) for k in scores}

    epochs = [e for e in manifest.get("epochs") or [] if isinstance(e, dict)]
    wall = _number(manifest.get("train_wall_time_s"))
    if wall is None and epochs:
        times = [_number(e.get("wall_time_s")) for e in epochs]
        wall = sum(t for t in times if t is not None) if any(t is not None for t in times) else None
    if wall is None:
        wall = next((_number(r.get("train_runtime")) for r in reversed(log) if _number(r.get("train_runtime"))), None)
    peaks = [p for p in (_number(e.get("peak_memory_bytes")) for e in epochs) if p is not None]
    from nlft.eval.accuracy import intervals

    ci = intervals(metrics) if metrics else {"ci95_strict": None, "ci95_flexible": None}
    return {"run": run.name, "method": method, "final_loss": final_loss, "accuracy": accuracy, **scores, **ci,
            "grading": _data_grading(manifest), "wall_time_s": wall, "peak_memory_bytes": max(peaks) if peaks else None,
            "drift": manifest.get("drift_monitor"), "kept": manifest.get("kept")}


def _data_grading(manifest: dict[str, Any]) -> str | None:
    """How a run's training outputs were graded (strict or flexible): the manifest's ``data.grading``, else the
    provenance of the data file's first record; None when neither says."""
    data = manifest.get("data") if isinstance(manifest.get("data"), dict) else {}
    if data.get("grading"):
        return str(data["grading"])
    path = Path(str(data.get("path") or ""))
    if not data.get("path") or not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            first = json.loads(fh.readline() or "{}")
    except (OSError, ValueError):
        return None
    judge = ((first.get("provenance") or {}).get("judge") or {}) if isinstance(first, dict) else {}
    return judge.get("grading") if isinstance(judge, dict) else None


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of :func:`summarize_run` rows (missing values shown as "-")."""

    def cell(key: str, value: Any) -> str:
        if value is None:
            return "-"
        if key == "final_loss":
            return f"{value:.4f}"
        if key.startswith("accuracy"):
            return f"{100 * value:.2f}%"
        if key == "wall_time_s":
            return f"{value / 60:.1f} min" if value >= 120 else f"{value:.1f} s"
        if key == "peak_memory_bytes":
            return f"{value / 2**30:.2f} GiB"
        if key.startswith("ci95"):
            return f"{100 * value[0]:.1f}-{100 * value[1]:.1f}%"
        if key == "drift":
            if not value.get("fired"):
                ratio = value.get("max_nll_ratio")
                return f"ok ({ratio:.2f}x)" if ratio is not None else "ok"
            return f"{'stopped' if value.get('stopped') else 'fired'} e{value['epoch']:.1f} ({value['nll_ratio']:.2f}x)"
        if key == "kept":
            return f"e{value['epoch']:g} ({value.get('keep', 'last')})" if value.get("epoch") is not None else "-"
        return str(value)

    columns = (("run", "run"), ("method", "method"), ("grading", "data graded"), ("final_loss", "final loss"),
               ("accuracy_strict", "strict"), ("ci95_strict", "95% CI"), ("accuracy_flexible", "flexible"),
               ("ci95_flexible", "95% CI"), ("wall_time_s", "wall time"), ("peak_memory_bytes", "peak memory"),
               ("drift", "drift"), ("kept", "kept"))
    # rows of older callers carry only "accuracy" (the strict one)
    body = [[cell(k, r.get(k) if k != "accuracy_strict" or r.get(k) is not None else r.get("accuracy"))
             for k, _ in columns] for r in rows]
    header = [title for _, title in columns]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    numeric = {3, 4, 5, 6, 7, 8, 9}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in body)]).rstrip()


def plot_compare(run_dirs: Sequence[str | Path], out: str | Path, labels: Sequence[str] | None = None) -> Path | None:
    """Overlay the training loss (per epoch) and the accuracy per epoch of several runs in one PNG.

    Args:
        run_dirs: the run directories.
        out: the PNG to write.
        labels: one legend label per run (default: folder name and method).

    Returns:
        The written path, or None when no run has a loss or an accuracy to draw.
    """
    if labels is not None and len(labels) != len(run_dirs):
        raise ValueError(f"got {len(labels)} labels for {len(run_dirs)} runs")
    fig, (ax1, ax2) = _figure(2, width=5.6)
    drawn = False
    for i, run_dir in enumerate(run_dirs):
        run = Path(run_dir)
        if labels is not None:
            label = labels[i]
        else:
            method = summarize_run(run)["method"]
            label = f"{run.name} ({method})" if method and method not in run.name else run.name
        colour = f"C{i % 10}"
        log = _read_jsonl(run / "log_history.jsonl")
        ex, ey = series(log, "loss", x="epoch")
        if ex:
            ax1.plot(ex, ey, color=colour, lw=1.5, label=label)
            drawn = True
        evals = _read_jsonl(run / "eval_history.jsonl")
        key = _accuracy_key(evals)
        if key is not None:
            ax, ay = series(evals, key, x="epoch")
            ax2.plot(ax, [100 * v for v in ay], color=colour, lw=1.8, marker="o", label=label)
            drawn = True
    if not drawn:
        return None
    ax1.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy per epoch")
    ax2.set_ylim(bottom=0)
    for ax in (ax1, ax2):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(frameon=False, fontsize=9)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, out)
