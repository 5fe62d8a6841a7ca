"""The study's tables, paired comparisons, preset selection and plots, from its committed files alone.

``cells.jsonl`` (every cell's ``result.json``) and ``predictions.jsonl.gz`` (per cell, which held-out
questions it answered right) are exported from a study directory's cell folders; everything else
(``table.json``, ``table.md``, ``paired.md``, ``selection.json``, the plots) is computed from those two
files, so ``nlft study --out docs/study --report`` regenerates the published tables without any cell folder.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import statistics
from pathlib import Path
from typing import Any

from nlft.study.config import LABELS, StudyConfig, slug
from nlft.study.data import export_task_data
from nlft.study.stats import holm, paired_counts, sign_flip_p
from nlft.utils.files import atomic_write_gzip, atomic_write_json, atomic_write_jsonl, read_jsonl

CELLS = "cells.jsonl"
PREDICTIONS = "predictions.jsonl.gz"
ALPHA = 0.05


def default_arm() -> str:
    """The table arm that trains with the default preset (what ``nlft train --method nlft`` does)."""
    from nlft.train.config import DEFAULT_PRESET

    return "nlft" if DEFAULT_PRESET == "paper" else f"nlft_{DEFAULT_PRESET}"


def primary_pairs() -> list[tuple[str, str]]:
    """The primary comparisons, named before the study ran: the default NLFT against SFT on the same outputs, against
    SDFT and against SFT on gold answers (each on every task and size)."""
    d = default_arm()
    return [(d, "sft_outputs"), (d, "sdft"), (d, "sft_gold")]


def secondary_pairs() -> list[tuple[str, str]]:
    """Comparisons reported beside the primary ones, adjusted as their own family."""
    d = default_arm()
    other = "nlft" if d != "nlft" else "nlft_robust"
    return [(d, "base"), (d, other), (d, "dft"), ("nlft_correct_only", d), ("sdft", "sft_outputs"),
            (other, "sft_outputs")]


# ---- export from cell folders ----------------------------------------------------------------------------


def export(root: Path, cfg: StudyConfig) -> int:
    """Write ``cells.jsonl`` and ``predictions.jsonl.gz`` from the cell folders of ``root``; returns the cells
    exported (0, files untouched, when ``root`` has no cell folder, e.g. the committed ``docs/study``). Each task
    whose data is built also gets its ``task-data/<task>.json.gz`` (:func:`export_task_data`)."""
    for task in cfg.tasks:
        export_task_data(root, task)
    cells, predictions = [], []
    for task in cfg.tasks:
        for path in sorted((root / slug(task) / "cells").glob("*/result.json")):
            result = json.loads(path.read_text())
            manifest = path.parent / "run" / "manifest.json"
            if "token_classes" not in result and manifest.exists():  # what the data gave (counts before training)
                result["token_classes"] = json.loads(manifest.read_text()).get("token_classes")
            cells.append(result)
            preds = path.parent / "heldout" / "predictions.jsonl"
            if preds.exists():
                rows = list(read_jsonl(preds))
                predictions.append({"task": slug(task), "cell": result["cell"], "ids": [r["id"] for r in rows],
                                    "flexible": "".join("1" if r["correct_flexible"] else "0" for r in rows),
                                    "strict": "".join("1" if r["correct"] else "0" for r in rows)})
    if not cells:
        return 0
    atomic_write_jsonl(root / CELLS, cells)
    atomic_write_gzip(root / PREDICTIONS, "".join(json.dumps(row, sort_keys=True) + "\n" for row in predictions))
    return len(cells)


def read_predictions(root: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """``(task slug, cell) -> {ids, flexible, strict}`` from ``predictions.jsonl.gz``."""
    path = root / PREDICTIONS
    if not path.exists():
        return {}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return {(r["task"], r["cell"]): r for r in map(json.loads, fh)}


# ---- tables -----------------------------------------------------------------------------------------------


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _cell(arm: str, n: int, seed: int) -> str:
    return f"{arm.replace(':', '_')}-n{n}-s{seed}"


def compare(a: str, b: str, task: str, n: int, cfg: StudyConfig, preds: dict[tuple[str, str], dict[str, Any]]
            ) -> dict[str, Any] | None:
    """One paired comparison of arms ``a`` and ``b`` (``base`` is the base model, the same in every seed) on the
    held-out questions of ``task`` at size ``n``, the seeds combined (:func:`nlft.study.stats.sign_flip_p`);
    None when a seed of either is missing."""
    t = slug(task)
    sides = []
    for arm in (a, b):
        per_seed = []
        for seed in cfg.seeds:
            got = preds.get((t, "base" if arm == "base" else _cell(arm, n, seed)))
            if got is None:
                return None
            per_seed.append(got)
        sides.append(per_seed)
    if any(x["ids"] != sides[0][0]["ids"] for side in sides for x in side):
        raise ValueError(f"{task}: the cells of {a} and {b} were scored on different questions")
    right = [[[c == "1" for c in x["flexible"]] for x in side] for side in sides]
    diffs, gained, lost = paired_counts(right[0], right[1])
    per_seed = [paired_counts([x], [y])[1:] for x, y in zip(right[0], right[1])]
    questions = len(diffs)
    return {"a": a, "b": b, "task": task, "n": n, "seeds": len(cfg.seeds), "questions": questions,
            "gained": gained, "lost": lost, "per_seed": [list(p) for p in per_seed],
            "difference": (gained - lost) / (questions * len(cfg.seeds)), "p": sign_flip_p(diffs)}


def collect(root: Path, cfg: StudyConfig) -> dict[str, Any]:
    """``table.json``: per task and size, each arm's accuracy over seeds, steps and kept steps; the comparisons."""
    from dataclasses import asdict

    cells = list(read_jsonl(root / CELLS)) if (root / CELLS).exists() else []
    preds = read_predictions(root)
    by = {(c["task"], c["cell"]): c for c in cells}
    table: dict[str, Any] = {"protocol": json.loads(json.dumps(asdict(cfg))), "default_arm": default_arm(),
                             "tasks": {}, "comparisons": []}
    for task in cfg.tasks:
        base = by.get((task, "base"))
        entry: dict[str, Any] = {"slug": slug(task), "base": None, "sizes": {}}
        if base:
            entry["base"] = {"flexible": base["accuracy_flexible"], "strict": base["accuracy_strict"],
                             "val_flexible": base.get("val_flexible"), "eval_n": base["eval_n"]}
        for n in cfg.sizes_of(task):
            arms: dict[str, Any] = {}
            for arm in cfg.arms_of(task):
                got = [by[(task, _cell(arm, n, s))] for s in cfg.seeds if (task, _cell(arm, n, s)) in by]
                scored = [r for r in got if r.get("accuracy_flexible") is not None]
                fm, fs = _mean_std([r["accuracy_flexible"] for r in scored])
                sm, ss = _mean_std([r["accuracy_strict"] for r in scored])
                arms[arm] = {
                    "seeds": len(scored), "flexible_mean": fm, "flexible_std": fs, "strict_mean": sm,
                    "strict_std": ss, "per_seed_flexible": [r["accuracy_flexible"] for r in scored],
                    "optimizer_steps": sorted({r.get("optimizer_steps") for r in scored}, key=str),
                    "budget": scored[0]["budget"] if scored else None,
                    "kept_steps": [r.get("kept_step") for r in scored],
                    "train_rows": [r.get("train_rows") for r in got],
                    "train_ids_sha": [r.get("train_ids_sha") for r in got],
                    "drift_fired": sum(bool((r.get("drift") or {}).get("fired")) for r in scored),
                    "train_s_mean": statistics.fmean(r["train_s"] for r in scored if r.get("train_s"))
                    if any(r.get("train_s") for r in scored) else None,
                    "skipped": next((r["skipped"] for r in got if r.get("skipped")), None)}
            entry["sizes"][str(n)] = arms
        table["tasks"][task] = entry
    for family, pairs in (("primary", primary_pairs()), ("secondary", secondary_pairs())):
        found = []
        for task in cfg.tasks:
            for n in cfg.sizes_of(task):
                for a, b in pairs:
                    if all(x == "base" or x in cfg.arms_of(task) for x in (a, b)):
                        result = compare(a, b, task, n, cfg, preds)
                        if result is not None:
                            found.append({**result, "family": family})
        for row, adjusted in zip(found, holm([r["p"] for r in found])):
            row["p_holm"] = adjusted
        table["comparisons"] += found
    return table


def verdict_word(comparison: dict[str, Any]) -> str:
    """``better``, ``worse`` or ``tie`` (no difference at ALPHA after Holm) for arm a against arm b."""
    if comparison["p_holm"] >= ALPHA:
        return "tie"
    return "better" if comparison["difference"] > 0 else "worse"


def _pct(x: float | None, std: float | None = None) -> str:
    if x is None:
        return "—"
    return f"{100 * x:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


def markdown(table: dict[str, Any]) -> str:
    """``table.md``: accuracy per task, size and arm; then the comparisons with their adjusted p-values."""
    lines = []
    for task, entry in table["tasks"].items():
        base = entry["base"]
        for n, arms in entry["sizes"].items():
            lines.append(f"### {task}, N = {n}\n")
            lines.append("Held-out accuracy in %, flexible (strict), mean ± std over seeds; every trained arm takes "
                         "the same optimiser steps and keeps its best validation checkpoint.\n")
            lines.append("| arm | flexible | strict | seeds | optimiser steps | kept steps | drift fired |")
            lines.append("|---|---|---|---|---|---|---|")
            if base:
                lines.append(f"| base model | {_pct(base['flexible'])} | {_pct(base['strict'])} | | | | |")
            for arm, r in arms.items():
                steps = ", ".join(str(s) for s in r["optimizer_steps"]) or "—"
                flex = f"({r['skipped']})" if r["skipped"] else _pct(r["flexible_mean"], r["flexible_std"])
                lines.append(f"| {LABELS.get(arm, arm)} | {flex} | {_pct(r['strict_mean'], r['strict_std'])} | "
                             f"{r['seeds']} | {steps} | {', '.join(str(k) for k in r['kept_steps'])} | "
                             f"{r['drift_fired']} |")
            lines.append("")
    for family in ("primary", "secondary"):
        rows = [c for c in table["comparisons"] if c["family"] == family]
        if not rows:
            continue
        lines.append(f"### {family.capitalize()} comparisons (paired over questions, seeds combined; Holm over "
                     f"the {len(rows)} {family} comparisons)\n")
        lines.append("| task | N | a | b | difference (points) | gained / lost | p | p (Holm) | verdict |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for c in rows:
            lines.append(f"| {c['task']} | {c['n']} | {LABELS.get(c['a'], c['a'])} | {LABELS.get(c['b'], c['b'])} | "
                         f"{100 * c['difference']:+.1f} | {c['gained']} / {c['lost']} | {c['p']:.3g} | "
                         f"{c['p_holm']:.3g} | {verdict_word(c)} |")
        lines.append("")
    return "\n".join(lines)


def paired_markdown(table: dict[str, Any]) -> str:
    """``paired.md``: each comparison's questions gained / lost per seed."""
    lines = ["| task | N | a | b | per seed: gained / lost | all seeds | p | p (Holm) |",
             "|---|---|---|---|---|---|---|---|"]
    for c in table["comparisons"]:
        per = "; ".join(f"{g}/{lost}" for g, lost in c["per_seed"])
        lines.append(f"| {c['task']} | {c['n']} | {c['a']} | {c['b']} | {per} | {c['gained']}/{c['lost']} | "
                     f"{c['p']:.3g} | {c['p_holm']:.3g} |")
    return "\n".join(lines) + "\n"


# ---- preset selection (validation questions only) ---------------------------------------------------------


def select_default(cells: list[dict[str, Any]], cfg: StudyConfig) -> dict[str, Any]:
    """The preset selection's verdict from validation accuracy alone (never the held-out questions).

    The criterion, fixed before any candidate ran: a candidate is eligible when, on every task and in every
    select seed, its validation accuracy at the end of training (the last evaluation, what a user gets without
    ``--keep best``) is not below the base model's; among the eligible, the one with the highest mean over tasks
    of (its mean validation accuracy - that of SFT on the same outputs, same draws) is chosen. Without an
    eligible candidate the one with the fewest such seeds, then the highest mean, is reported as the least bad.

    Each candidate also says whether it meets the bar a default must meet (``meets_bar``): no seed below the base
    model and a mean at least SFT's on the same outputs, on every task; and, per task, what its data gave
    (``token_classes`` of its cells' first seed: flagged tokens, incorrect outputs with no flag or excluded).
    """
    by = {(c["task"], c["cell"]): c for c in cells}
    rows = []
    for cand in cfg.candidates:
        violations, margins, per_task = 0, [], {}
        for task in cfg.tasks:
            base = (by.get((task, "base")) or {}).get("val_flexible")
            mine = [by.get((task, _cell(f"cand:{cand}", cfg.select_size, s))) for s in cfg.select_seeds]
            sft = [by.get((task, _cell("sft_outputs", cfg.select_size, s))) for s in cfg.select_seeds]
            if base is None or any(c is None or c.get("last_val_flexible") is None for c in mine):
                per_task[task] = None
                continue
            last = [c["last_val_flexible"] for c in mine]
            violations += sum(v < base for v in last)
            sft_last = [c["last_val_flexible"] for c in sft if c and c.get("last_val_flexible") is not None]
            margin = statistics.fmean(last) - statistics.fmean(sft_last) if sft_last else None
            if margin is not None:
                margins.append(margin)
            per_task[task] = {"base": base, "last": last, "kept": [c.get("kept_val_flexible") for c in mine],
                              "sft_outputs_last": sft_last, "margin": margin,
                              "token_classes": mine[0].get("token_classes")}
        complete = all(v is not None for v in per_task.values()) and len(margins) == len(cfg.tasks)
        bar = complete and violations == 0 and all(x["margin"] >= 0 for x in per_task.values())
        rows.append({"candidate": cand, "complete": complete, "below_base": violations, "meets_bar": bar,
                     "mean_margin": statistics.fmean(margins) if margins else None, "tasks": per_task})
    done = [r for r in rows if r["complete"]]
    eligible = [r for r in done if r["below_base"] == 0]
    pick = max(eligible, key=lambda r: r["mean_margin"], default=None)
    least_bad = min(done, key=lambda r: (r["below_base"], -r["mean_margin"]), default=None)
    return {"criterion": select_default.__doc__.split("\n\n")[1].strip(), "n": cfg.select_size,
            "seeds": list(cfg.select_seeds), "candidates": rows,
            "chosen": pick["candidate"] if pick else None,
            "least_bad": None if pick or least_bad is None else least_bad["candidate"]}


def selection_markdown(sel: dict[str, Any]) -> str:
    """The selection as a table: per candidate and task, last validation accuracies vs the base model and SFT."""
    tasks = list(next(iter(sel["candidates"]))["tasks"]) if sel["candidates"] else []
    lines = ["| candidate | " + " | ".join(slug(t) for t in tasks)
             + " | seeds below base | mean margin over SFT | meets the bar |", "|---|" + "---|" * (len(tasks) + 3)]
    for r in sel["candidates"]:
        cells = []
        for t in tasks:
            x = r["tasks"].get(t)
            if x is None:
                cells.append("—")
                continue
            last = "/".join(f"{100 * v:.0f}" for v in x["last"])
            sft = "/".join(f"{100 * v:.0f}" for v in x["sft_outputs_last"])
            cells.append(f"{last} (base {100 * x['base']:.0f}, SFT {sft})")
        margin = "—" if r["mean_margin"] is None else f"{100 * r['mean_margin']:+.1f}"
        lines.append(f"| {r['candidate']} | " + " | ".join(cells) + f" | {r['below_base']} | {margin} | "
                     f"{'yes' if r.get('meets_bar') else 'no'} |")
    chosen = sel.get("chosen") or f"none (least bad: {sel.get('least_bad')})"
    lines += ["", f"Chosen by the criterion: **{chosen}**.", "",
              "What the data gave, per task (first select seed; counts before training: erroneous tokens, incorrect "
              "outputs with no flagged token / excluded as entirely wrong / of all incorrect):", "",
              "| candidate | " + " | ".join(slug(t) for t in tasks) + " |", "|---|" + "---|" * len(tasks)]
    for r in sel["candidates"]:
        cells = []
        for t in tasks:
            k = (r["tasks"].get(t) or {}).get("token_classes")
            cells.append("—" if not k else f"{k['erroneous']} flagged; {k['incorrect_without_flag']}/"
                         f"{k['incorrect_excluded']}/{k['incorrect_outputs']}")
        lines.append(f"| {r['candidate']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---- plots and the whole report ---------------------------------------------------------------------------


def plot(table: dict[str, Any], root: Path) -> Path | None:
    """``plot_tasks.png``: each task's held-out accuracy per arm (bars: mean over seeds; dots: seeds; dashed: base)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(t, n, arms, e["base"]) for t, e in table["tasks"].items() for n, arms in e["sizes"].items()]
    panels = [p for p in panels if any(a["seeds"] for a in p[2].values())]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    for ax, (task, n, arms, base) in zip(axes[0], panels):
        names = [a for a in arms if arms[a]["seeds"]]
        xs = range(len(names))
        ax.bar(xs, [100 * arms[a]["flexible_mean"] for a in names], color="#9ecae1")
        for x, a in zip(xs, names):
            ax.plot([x] * len(arms[a]["per_seed_flexible"]), [100 * v for v in arms[a]["per_seed_flexible"]], "k.")
        if base:
            ax.axhline(100 * base["flexible"], color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(list(xs), names, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{slug(task)}, N = {n}", fontsize=9)
        ax.set_ylabel("held-out accuracy, flexible (%)", fontsize=8)
    fig.tight_layout()
    path = root / "plot_tasks.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(root: Path, cfg: StudyConfig) -> dict[str, Any]:
    """Export the cells (when ``root`` has cell folders), then ``table.json``, ``table.md``, ``paired.md``,
    ``selection.json``/``selection.md`` and the plot from the exported files."""
    export(root, cfg)
    table = collect(root, cfg)
    atomic_write_json(root / "table.json", table)
    (root / "table.md").write_text(markdown(table), encoding="utf-8")
    (root / "paired.md").write_text(paired_markdown(table), encoding="utf-8")
    cells = list(read_jsonl(root / CELLS)) if (root / CELLS).exists() else []
    if any(c["arm"].startswith("cand:") for c in cells):
        sel = select_default(cells, cfg)
        atomic_write_json(root / "selection.json", sel)
        (root / "selection.md").write_text(selection_markdown(sel), encoding="utf-8")
    with contextlib.suppress(ImportError):
        plot(table, root)
    return table
