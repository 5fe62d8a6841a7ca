"""The small-data study: base model, SFT (gold answers, same outputs), DFT, CUT, NLFT (paper and robust).

One study directory holds everything, each piece cached, so that the study runs in parts and a
rerun redoes only what is missing::

    study.json                    the protocol (the resolved :class:`StudyConfig`); a rerun must match it
    <part>/data/prompt.txt        the one prompt of generation, training (X_base) and evaluation
    <part>/data/train.jsonl       training questions (the first N of them form the size-N set)
    <part>/data/val.jsonl         validation questions: settings are chosen on these (``sweep/``)
    <part>/data/eval.jsonl        held-out questions, reported only (none shares its text with another set)
    <part>/data/prepare/          outputs of the base model, graded and judged (``nlft prepare``)
    <part>/data/nlft-n<N>.jsonl   the first N prepared records
    <part>/cells/<cell>/          run/ (``nlft train``), eval/ (predictions, metrics), result.json
    sweep/<name>/                 candidate settings of the robust preset, trained at N = sweep_size, scored on val
    table.json, table.md          accuracy mean +- std over seeds per method and size; per-epoch curves
    cells.jsonl                   every cell's result.json (``--import-cells`` restores them elsewhere)
    plot_sizes.png, plot_epochs.png

``<part>`` is ``main`` (the task, all sizes and seeds, and the per-epoch curves) or ``gsm8k`` (a
smaller GSM8K check). A cell is ``<method>-n<N>-s<seed>`` (``-e<E>`` for a per-epoch curve run)
or ``base``; its ``result.json`` is written last, so a cell with one is done.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nlft.utils.files import DataError, atomic_write_json, atomic_write_jsonl, read_jsonl

# study method -> (nlft train --method, --sft-data, --preset)
METHODS: dict[str, tuple[str, str | None, str | None]] = {
    "sft_gold": ("sft", "reference", None),
    "sft_outputs": ("sft", "outputs", None),
    "dft": ("dft", "outputs", None),
    "cut": ("cut", None, None),
    "nlft": ("nlft", None, "paper"),
    "nlft_robust": ("nlft", None, "robust"),
}
LABELS = {"base": "base model", "sft_gold": "SFT, gold answers", "sft_outputs": "SFT, same outputs",
          "dft": "DFT, same outputs", "cut": "CUT", "nlft": "NLFT (paper)", "nlft_robust": "NLFT (robust)"}
# Candidate settings of the robust preset, each trained at N = sweep_size and scored on the validation
# questions (never on the held-out ones); the winner is NLFTConfig's "robust" preset.
SWEEP_CANDIDATES: dict[str, dict[str, Any]] = {
    "paper": {},
    "likelihood": {"irrelevant_incorrect": "likelihood"},
    "likelihood_initial": {"irrelevant_incorrect": "likelihood", "error_reference": "initial"},
    "likelihood_initial_balance": {"irrelevant_incorrect": "likelihood", "error_reference": "initial",
                                   "class_balance": True},
    "likelihood_initial_kl": {"irrelevant_incorrect": "likelihood", "error_reference": "initial", "kl_coef": 0.1},
}


@dataclass
class StudyConfig:
    """The study's protocol. Defaults: the CPU study of ``docs/study.md`` (SmolLM2-135M-Instruct)."""

    model: str = "smollm2"
    task: str = "chain_sum:max_terms=3,max_digits=2"
    data_dir: str | None = None
    sizes: tuple[int, ...] = (50, 100, 200)
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = ("sft_gold", "sft_outputs", "dft", "cut", "nlft", "nlft_robust")
    prompt: str = "brief"
    epochs: float = 3.0
    lr: float = 2e-4
    batch_size: int = 4
    eval_size: int = 300
    val_size: int = 100
    sweep_size: int = 200
    sweep_seed: int = 0
    eval_max_new_tokens: int = 64
    eval_batch_size: int = 64
    gen_max_new_tokens: int = 64
    grading: str = "flexible"
    curve_size: int = 50
    curve_epochs: int = 10
    curve_seeds: tuple[int, ...] = (0,)
    curve_eval_size: int = 100
    gsm8k: bool = False
    gsm8k_size: int = 50
    gsm8k_eval_size: int = 100
    gsm8k_methods: tuple[str, ...] = ("sft_gold", "cut", "nlft")
    gsm8k_max_new_tokens: int = 256
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # one spelling of each number, so that equal protocols have equal digests (protocol_sha)
        self.epochs, self.lr = float(self.epochs), float(self.lr)
        for name in (*self.methods, *self.gsm8k_methods):
            if name not in METHODS:
                raise ValueError(f"unknown study method {name!r}; choose from {', '.join(METHODS)}")
        if not self.sizes or min(self.sizes) < 1:
            raise ValueError(f"sizes must be positive, got {self.sizes}")
        from nlft.tasks.prompts import TEMPLATES

        if self.prompt not in TEMPLATES:
            raise ValueError(f"prompt must be one of {', '.join(TEMPLATES)}, got {self.prompt!r}")
        if self.grading not in ("strict", "flexible"):
            raise ValueError(f"grading must be strict or flexible, got {self.grading!r}")


@dataclass
class Part:
    """One dataset of the study: its questions, sizes, seeds, methods and decoding lengths."""

    name: str
    task: str
    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    eval_size: int
    max_new_tokens: int
    data_dir: str | None = None
    curve: bool = False


def parts(cfg: StudyConfig) -> list[Part]:
    """The study's parts: the main task, and GSM8K when ``cfg.gsm8k``."""
    out = [Part("main", cfg.task, tuple(cfg.sizes), tuple(cfg.seeds), tuple(cfg.methods), cfg.eval_size,
                cfg.eval_max_new_tokens, cfg.data_dir, curve=True)]
    if cfg.gsm8k:
        out.append(Part("gsm8k", "gsm8k", (cfg.gsm8k_size,), (cfg.seeds[0],), tuple(cfg.gsm8k_methods),
                        cfg.gsm8k_eval_size, cfg.gsm8k_max_new_tokens, cfg.data_dir))
    return out


def _log(msg: str) -> None:
    print(f"[study {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def check_protocol(out: Path, cfg: StudyConfig) -> None:
    """Write ``study.json``, or refuse a study directory made with another protocol."""
    from nlft.utils.resume import check_run_args

    out.mkdir(parents=True, exist_ok=True)
    check_run_args(out, asdict(cfg), name="study.json")


def build_data(out: Path, cfg: StudyConfig, part: Part) -> None:
    """Training and held-out questions, then the base model's outputs, graded and judged (cached)."""
    from nlft.tasks.registry import dataset_task
    from nlft.tasks.sources import load_questions

    data = out / part.name / "data"
    data.mkdir(parents=True, exist_ok=True)
    task = dataset_task(part.task)
    if not (data / "prompt.txt").exists():
        (data / "prompt.txt").write_text(task.template(cfg.prompt), encoding="utf-8")
    n_train = max(part.sizes)
    if not (data / "eval.jsonl").exists():
        train = load_questions(part.task, data_dir=part.data_dir, split="train", limit=n_train)
        if len(train) < n_train:
            raise DataError(f"only {len(train)} training questions, {n_train} needed", path=part.task)
        seen = {r["question"] for r in train}
        want = part.eval_size + cfg.val_size
        pool = load_questions(part.task, data_dir=part.data_dir, split="test", limit=want * 2)
        unique: dict[str, dict[str, Any]] = {}
        for r in pool:
            if r["question"] not in seen:
                unique.setdefault(r["question"], r)
        rest = list(unique.values())
        held, val = rest[:part.eval_size], rest[part.eval_size:want]
        if len(held) + len(val) < want:
            raise DataError(f"only {len(rest)} held-out and validation questions not in the training set, {want} "
                            "needed", path=part.task)

        def rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            from nlft.tasks.sources import file_row

            return [file_row(r) for r in items]

        atomic_write_jsonl(data / "train.jsonl", rows(train))
        atomic_write_jsonl(data / "val.jsonl", rows(val))
        atomic_write_jsonl(data / "eval.jsonl", rows(held))
    prepared = data / "prepare" / "nlft.jsonl"
    if not (data / "prepare" / "summary.json").exists():
        from nlft.data.build import (
            BackendSpec,
            JudgeSpec,
            SamplingSpec,
            TemplateSpec,
            format_summary,
            prepare,
            rule_kind,
        )
        from nlft.tasks.sources import load_questions

        _log(f"{part.name}: outputs of {cfg.model} for {n_train} questions, graded ({cfg.grading}) and judged")
        max_new = cfg.gen_max_new_tokens if part.name == "main" else part.max_new_tokens
        # What `nlft prepare --dataset train.jsonl --template prompt.txt --judge calculator` does; study.json
        # (check_protocol) already holds the settings a rerun must match.
        result = prepare(load_questions(str(data / "train.jsonl")), data / "prepare",
                         backend=BackendSpec(model=cfg.model),
                         sampling=SamplingSpec(max_new_tokens=max_new, batch_size=32),
                         template=TemplateSpec.from_file(str(data / "prompt.txt")),
                         judge=JudgeSpec(kind=rule_kind(task), batch_size=32, grading=cfg.grading), progress=False)
        _log(f"{part.name}: " + format_summary(result.summary).replace("\n", "; "))
    records = list(read_jsonl(prepared))
    usable = [r for r in records if r["output"].strip()]
    if len(usable) < len(records):
        _log(f"{part.name}: {len(records) - len(usable)} empty outputs left out of the training sets")
    for n in part.sizes:
        target = data / f"nlft-n{n}.jsonl"
        if not target.exists():
            atomic_write_jsonl(target, usable[:n])


def _eval_rows(out: Path, part: Part, name: str = "eval") -> list[dict[str, Any]]:
    from nlft.tasks.sources import load_questions

    return load_questions(str(out / part.name / "data" / f"{name}.jsonl"))


def _evaluate(cfg: StudyConfig, part: Part, rows: list[dict[str, Any]], out_dir: Path,
              adapter: str | None) -> dict[str, Any]:
    from nlft.eval.accuracy import evaluate
    from nlft.tasks.registry import dataset_task
    from nlft.utils.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, adapter=adapter)
    if adapter:
        model = model.merge_and_unload()  # same outputs up to float rounding, no LoRA matmuls per token
    return evaluate(model, tokenizer, rows, out_dir=out_dir, batch_size=cfg.eval_batch_size,
                    max_new_tokens=part.max_new_tokens, progress=False, source=str(out_dir),
                    template=dataset_task(part.task).template(cfg.prompt))


def _metrics(m: dict[str, Any]) -> dict[str, Any]:
    """An evaluation's figures for a cell's ``result.json`` (``eval_n``: questions graded; ``n`` is N)."""
    from nlft.eval.accuracy import intervals

    return {"eval_n": m["n"], **{k: m[k] for k in ("accuracy_strict", "accuracy_flexible", "answered_share")},
            **intervals(m)}


def run_base(out: Path, cfg: StudyConfig, part: Part) -> dict[str, Any]:
    """The base model's accuracy on the held-out set (cached in ``cells/base``)."""
    cell = out / part.name / "cells" / "base"
    if (cell / "result.json").exists():
        return json.loads((cell / "result.json").read_text())
    _log(f"{part.name}: evaluating the base model")
    start = time.perf_counter()
    metrics = _evaluate(cfg, part, _eval_rows(out, part), cell / "eval", None)
    result = {"cell": "base", "method": "base", **_metrics(metrics), "eval_s": time.perf_counter() - start,
              "protocol_sha": protocol_sha(cfg)}
    if part.curve:  # the curves' epoch 0: the base model on their questions
        result["curve_base"] = _base_on_first(out, part, min(cfg.curve_eval_size, part.eval_size))
    atomic_write_json(cell / "result.json", result)
    return result


def cell_name(method: str, n: int, seed: int, epochs: float | None = None) -> str:
    """``nlft-n50-s0``, or ``nlft-n50-s0-e10`` for a per-epoch curve run."""
    return f"{method}-n{n}-s{seed}" + (f"-e{epochs:g}" if epochs is not None else "")


def run_cell(out: Path, cfg: StudyConfig, part: Part, method: str, n: int, seed: int,
             curve_epochs: int | None = None) -> dict[str, Any]:
    """Train one method on the first ``n`` records with ``seed``, then evaluate it (cached; resumes)."""
    name = cell_name(method, n, seed, curve_epochs)
    cell = out / part.name / "cells" / name
    if (cell / "result.json").exists():
        return json.loads((cell / "result.json").read_text())
    return _train_and_score(out, cfg, part, cell, name, method, n, seed, curve_epochs, {}, "eval")


def run_sweep(out: Path, cfg: StudyConfig, part: Part, *, only: list[str] | None = None) -> dict[str, Any]:
    """Train every :data:`SWEEP_CANDIDATES` setting at N = ``sweep_size`` and score it on the validation questions.

    Writes ``sweep/<name>/result.json`` and ``sweep.json`` (the candidates done so far, ranked by
    validation accuracy); the held-out questions are never read here. ``only``: run just these
    candidates now (several processes can share the work).
    """
    base = out / part.name / "sweep" / "base"
    if not (base / "result.json").exists():
        _log(f"{part.name}: evaluating the base model on the validation questions")
        atomic_write_json(base / "result.json", {"cell": "sweep/base", "method": "base", **_metrics(
            _evaluate(cfg, part, _eval_rows(out, part, "val"), base / "val", None)), "protocol_sha": protocol_sha(cfg)})
    results = {}
    for name, overrides in SWEEP_CANDIDATES.items():
        cell = out / part.name / "sweep" / name
        if (cell / "result.json").exists():
            results[name] = json.loads((cell / "result.json").read_text())
            continue
        if only and name not in only:
            continue
        results[name] = _train_and_score(out, cfg, part, cell, f"sweep/{name}", "nlft", cfg.sweep_size,
                                         cfg.sweep_seed, None, overrides, "val")
        results[name]["overrides"] = overrides
        atomic_write_json(cell / "result.json", results[name])
    for name in SWEEP_CANDIDATES:  # what other processes finished meanwhile
        done = out / part.name / "sweep" / name / "result.json"
        if name not in results and done.exists():
            results[name] = json.loads(done.read_text())
    ranked = sorted(results.values(), key=lambda r: -(r.get("accuracy_flexible") or 0.0))
    base_val = json.loads((base / "result.json").read_text())
    summary = {"n": cfg.sweep_size, "seed": cfg.sweep_seed, "scored_on": "val", "val_size": cfg.val_size,
               "base_flexible": base_val["accuracy_flexible"], "base_strict": base_val["accuracy_strict"],
               "ranked": [{"name": r["cell"].split("/", 1)[-1], "accuracy_flexible": r.get("accuracy_flexible"),
                           "accuracy_strict": r.get("accuracy_strict"), "overrides": r.get("overrides", {})}
                          for r in ranked]}
    atomic_write_json(out / part.name / "sweep.json", summary)
    return summary


def _train_and_score(out: Path, cfg: StudyConfig, part: Part, cell: Path, name: str, method: str, n: int, seed: int,
                     curve_epochs: int | None, overrides: dict[str, Any], score_on: str) -> dict[str, Any]:
    """Train ``method`` (with NLFT ``overrides``) on the first ``n`` records, then score it on ``score_on``."""
    from nlft.report.plots import try_plot_run
    from nlft.train import TrainOptions, run_training

    data = out / part.name / "data" / f"nlft-n{n}.jsonl"
    records = list(read_jsonl(data))
    train_method, sft_data, preset = METHODS[method]
    n_rows = sum(bool(r["correct"]) for r in records) if sft_data == "outputs" else len(records)
    result: dict[str, Any] = {"cell": name, "method": method, "n": n, "seed": seed, "train_rows": n_rows,
                              "protocol_sha": protocol_sha(cfg)}
    if preset:
        from nlft.train.config import PRESETS

        result["preset_settings"] = {**PRESETS[preset], **overrides}
    if n_rows == 0:
        _log(f"{part.name}/{name}: no correct outputs to train on; the cell stays empty")
        result.update(accuracy_strict=None, accuracy_flexible=None, skipped="no correct outputs")
        atomic_write_json(cell / "result.json", result)
        return result
    run_dir = cell / "run"
    epochs = float(curve_epochs if curve_epochs is not None else cfg.epochs)
    done = (run_dir / "adapter").is_dir() and (run_dir / "manifest.json").exists() and json.loads(
        (run_dir / "manifest.json").read_text()).get("final")
    start = time.perf_counter()
    if not done:
        _log(f"{part.name}/{name}: training {train_method} on {n_rows} rows for {epochs:g} epochs")
        opts = TrainOptions(
            method=train_method, data=str(data), out=str(run_dir), model=cfg.model, epochs=epochs, lr=cfg.lr,
            batch_size=cfg.batch_size, seed=seed, sft_data=sft_data or "outputs", save_total_limit=1,
            resume=run_dir.exists(), logging_steps=5, preset=preset, **overrides,
            eval_each_epoch=curve_epochs is not None, eval_data=str(out / part.name / "data" / "eval.jsonl"),
            eval_batch_size=cfg.eval_batch_size, eval_max_new_tokens=part.max_new_tokens,
            eval_limit=cfg.curve_eval_size if curve_epochs is not None else None, eval_merged=True)
        run_training(opts)
        try_plot_run(run_dir)  # as `nlft train` does; a failed plot does not stop the study
    train_s = time.perf_counter() - start
    result["train_s"] = train_s
    if curve_epochs is not None:
        history = list(read_jsonl(run_dir / "eval_history.jsonl"))
        result["curve"] = [{"epoch": h["epoch"], "accuracy_strict": h["accuracy_strict"],
                            "accuracy_flexible": h["accuracy_flexible"]} for h in history]
        result.update(eval_n=history[-1]["n"], **{k: history[-1][k] for k in ("accuracy_strict", "accuracy_flexible")})
    else:
        _log(f"{part.name}/{name}: evaluating")
        start = time.perf_counter()
        metrics = _evaluate(cfg, part, _eval_rows(out, part, score_on), cell / score_on, str(run_dir / "adapter"))
        result.update(_metrics(metrics), eval_s=time.perf_counter() - start)
    atomic_write_json(cell / "result.json", result)
    _log(f"{part.name}/{name}: accuracy flexible {result['accuracy_flexible']:.3f}, "
         f"strict {result['accuracy_strict']:.3f}")
    return result


def cells_of(cfg: StudyConfig, part: Part) -> list[tuple[str, int, int, int | None]]:
    """Every (method, n, seed, curve epochs) of a part, in the order the study runs them.

    The table sizes of the size-N set only: the per-epoch curve cells (N = ``cfg.curve_size``) come
    after the first seed's cells.
    """
    cells: list[tuple[str, int, int, int | None]] = []
    for i, seed in enumerate(part.seeds):  # seed by seed: a study cut short still has whole tables
        for n in part.sizes:
            cells += [(m, n, seed, None) for m in part.methods]
        if part.curve and i == 0:
            for curve_seed in cfg.curve_seeds:
                cells += [(m, cfg.curve_size, curve_seed, cfg.curve_epochs) for m in part.methods]
    return cells


def run_study(out: str | Path, cfg: StudyConfig, *, only: list[str] | None = None,
              skip_parts: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run (or finish) every cell of the study, then write the tables and plots; returns the table."""
    root = Path(out)
    check_protocol(root, cfg)
    for part in parts(cfg):
        if part.name in skip_parts:
            continue
        if part.curve and cfg.curve_size not in part.sizes:
            part.sizes = tuple(sorted({*part.sizes, cfg.curve_size}))
        build_data(root, cfg, part)
        if not only or "base" in only:
            run_base(root, cfg, part)
        for method, n, seed, epochs in cells_of(cfg, part):
            name = cell_name(method, n, seed, epochs)
            tokens = (name, method, f"n{n}", f"s{seed}", part.name, "curve" if epochs else "table")
            if only and not any(o in tokens for o in only):
                continue
            run_cell(root, cfg, part, method, n, seed, epochs)
    return write_report(root, cfg)


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def collect(root: Path, cfg: StudyConfig) -> dict[str, Any]:
    """The table from the cells done so far: per part, method and size, mean and std over seeds."""
    table: dict[str, Any] = {"protocol": json.loads(json.dumps(asdict(cfg))), "parts": {}}
    for part in parts(cfg):
        cells_dir = root / part.name / "cells"
        results = {p.parent.name: json.loads(p.read_text()) for p in cells_dir.glob("*/result.json")} \
            if cells_dir.is_dir() else {}
        summary = root / part.name / "data" / "prepare" / "summary.json"
        entry: dict[str, Any] = {"task": part.task, "eval_size": part.eval_size, "rows": []}
        if summary.exists():
            entry["data"] = json.loads(summary.read_text())
        if "base" in results:
            base = results["base"]
            entry["rows"].append({"method": "base", "n": 0, "seeds": 1,
                                  "flexible_mean": base["accuracy_flexible"], "flexible_std": 0.0,
                                  "strict_mean": base["accuracy_strict"], "strict_std": 0.0})
        for method in part.methods:
            for n in part.sizes:
                got = [results[cell_name(method, n, s)] for s in part.seeds if cell_name(method, n, s) in results]
                scored = [r for r in got if r.get("accuracy_flexible") is not None]
                fm, fs = _mean_std([r["accuracy_flexible"] for r in scored])
                sm, ss = _mean_std([r["accuracy_strict"] for r in scored])
                entry["rows"].append({
                    "method": method, "n": n, "seeds": len(scored), "flexible_mean": fm, "flexible_std": fs,
                    "strict_mean": sm, "strict_std": ss,
                    "train_rows": got[0]["train_rows"] if got else None,
                    "per_seed_flexible": [r["accuracy_flexible"] for r in scored],
                    "train_s_mean": statistics.fmean(r["train_s"] for r in scored) if scored else None,
                    "skipped": next((r["skipped"] for r in got if r.get("skipped")), None)})
        if part.curve:
            curves = {}
            for method in part.methods:
                runs = [results[c] for s in cfg.curve_seeds
                        if (c := cell_name(method, cfg.curve_size, s, cfg.curve_epochs)) in results]
                if runs and runs[0].get("curve"):
                    epochs = [p["epoch"] for p in runs[0]["curve"]]
                    curves[method] = {
                        "epochs": epochs,
                        "flexible": [statistics.fmean(r["curve"][i]["accuracy_flexible"] for r in runs
                                                      if len(r["curve"]) > i) for i in range(len(epochs))],
                        "strict": [statistics.fmean(r["curve"][i]["accuracy_strict"] for r in runs
                                                    if len(r["curve"]) > i) for i in range(len(epochs))],
                        "seeds": len(runs)}
            entry["curves"] = curves
            entry["curve_eval_size"] = min(cfg.curve_eval_size, part.eval_size)
            entry["curve_base"] = _base_on_first(root, part, entry["curve_eval_size"]) or \
                results.get("base", {}).get("curve_base")
        table["parts"][part.name] = entry
    return table


def _base_on_first(root: Path, part: Part, count: int) -> dict[str, float] | None:
    """The base model's accuracy on the first ``count`` held-out questions (the curves' questions)."""
    preds = root / part.name / "cells" / "base" / "eval" / "predictions.jsonl"
    held = root / part.name / "data" / "eval.jsonl"
    if not (preds.exists() and held.exists()):
        return None
    ids = [r["id"] for r in read_jsonl(held)][:count]
    by_id = {r["id"]: r for r in read_jsonl(preds)}
    if not ids or any(i not in by_id for i in ids):
        return None
    return {"flexible": statistics.fmean(bool(by_id[i]["correct_flexible"]) for i in ids),
            "strict": statistics.fmean(bool(by_id[i]["correct"]) for i in ids), "n": len(ids)}


def _fmt(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{100 * mean:.1f} ± {100 * (std or 0):.1f}"


def markdown(table: dict[str, Any]) -> str:
    """The table as Markdown: accuracy (%) mean ± std over seeds, flexible then strict grading."""
    from nlft.tasks.registry import dataset_task

    lines = []
    for name, part in table["parts"].items():
        sizes = sorted({r["n"] for r in part["rows"] if r["method"] != "base"})
        lines.append(f"### {name}: {part['task']} (held-out {part['eval_size']} questions)\n")
        grading = ("flexible grading (last number), strict (`#### N`)" if dataset_task(part["task"]).name == "number"
                   else "flexible grading (any usual phrasing), strict (`####`)")
        lines.append(f"Accuracy in %, mean ± std over seeds; {grading} in brackets.\n")
        lines.append("| method | " + " | ".join(f"N = {n}" for n in sizes) + " |")
        lines.append("|---|" + "---|" * len(sizes))
        for method in dict.fromkeys(r["method"] for r in part["rows"]):
            cells = []
            for n in sizes:
                row = next((r for r in part["rows"] if r["method"] == method and (r["n"] == n or method == "base")),
                           None)
                if row is None or row["flexible_mean"] is None:
                    cells.append("—" if not (row and row.get("skipped")) else f"({row['skipped']})")
                    continue
                if method == "base" or row["seeds"] == 1:
                    note = "" if method == "base" else " (1 seed)"
                    cells.append(f"{100 * row['flexible_mean']:.1f} [{100 * row['strict_mean']:.1f}]{note}")
                    continue
                note = f" ({row['seeds']} seeds)" if row["seeds"] < len(table["protocol"]["seeds"]) and \
                    name == "main" else ""
                cells.append(f"{_fmt(row['flexible_mean'], row['flexible_std'])} "
                             f"[{_fmt(row['strict_mean'], row['strict_std'])}]{note}")
            lines.append(f"| {LABELS.get(method, method)} | " + " | ".join(cells) + " |")
        if part.get("curves"):
            curves = part["curves"]
            epochs = max((c["epochs"] for c in curves.values()), key=len)
            lines.append(f"\nPer-epoch accuracy (flexible, %), N = {table['protocol']['curve_size']}, "
                         f"on the first {part['curve_eval_size']} held-out questions:\n")
            start = part.get("curve_base")
            lines.append("| method | " + ("0 (base) | " if start else "") + " | ".join(f"{e:g}" for e in epochs)
                         + " |")
            lines.append("|---|" + "---|" * (len(epochs) + bool(start)))
            for method, c in curves.items():
                lines.append(f"| {LABELS.get(method, method)} | " + (f"{100 * start['flexible']:.1f} | " if start
                                                                      else "")
                             + " | ".join(f"{100 * v:.1f}" for v in c["flexible"]) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(table: dict[str, Any], root: Path) -> list[Path]:
    """``plot_sizes.png`` (accuracy against N, error bars = std over seeds) and ``plot_epochs.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    main = table["parts"].get("main")
    if not main:
        return written
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in main["rows"] if r["method"] != "base"):
        rows = [r for r in main["rows"] if r["method"] == method and r["flexible_mean"] is not None]
        if rows:
            ax.errorbar([r["n"] for r in rows], [100 * r["flexible_mean"] for r in rows],
                        yerr=[100 * r["flexible_std"] for r in rows], marker="o", capsize=3,
                        label=LABELS.get(method, method))
    base = next((r for r in main["rows"] if r["method"] == "base"), None)
    if base:
        ax.axhline(100 * base["flexible_mean"], color="grey", linestyle="--", label="base model")
    ax.set_xlabel("training examples N")
    ax.set_ylabel("held-out accuracy, flexible (%)")
    ax.set_title(main["task"])
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(root / "plot_sizes.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    if main.get("curves"):
        fig, ax = plt.subplots(figsize=(6, 4))
        start = main.get("curve_base")
        for method, c in main["curves"].items():
            xs, ys = c["epochs"], [100 * v for v in c["flexible"]]
            if start:  # epoch 0: the base model on the same questions
                xs, ys = [0, *xs], [100 * start["flexible"], *ys]
            ax.plot(xs, ys, marker="o", label=LABELS.get(method, method))
        ax.set_xlabel("epoch")
        ax.set_ylabel("held-out accuracy, flexible (%)")
        ax.set_title(f"N = {table['protocol']['curve_size']}, first {main['curve_eval_size']} held-out questions")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(root / "plot_epochs.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def protocol_sha(cfg: StudyConfig) -> str:
    """A digest of the protocol: cells of one study carry it, so cells of another are never mixed in."""
    import hashlib

    return hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode("utf-8")).hexdigest()[:16]


def import_cells(root: Path, cfg: StudyConfig, path: str | Path) -> int:
    """Restore finished cells from a ``cells.jsonl`` (e.g. ``docs/study/cells.jsonl``) into a study directory.

    Only rows of the same protocol (:func:`protocol_sha`), and for the NLFT arms of the same preset
    settings, whose cell is not done here are written, so a study run in parts on several machines
    continues where it stopped. Returns the count.
    """
    from nlft.train.config import PRESETS

    sha = protocol_sha(cfg)
    count = 0
    for row in read_jsonl(path):
        if row.get("protocol_sha") != sha or row.get("part") not in {p.name for p in parts(cfg)}:
            continue
        preset = METHODS.get(row.get("method", ""), (None, None, None))[2]
        sweep = row["cell"].startswith("sweep/")  # a sweep candidate, "sweep/<name>", or a table or curve cell
        if preset and sweep:
            expected = {**PRESETS["paper"], **SWEEP_CANDIDATES.get(row["cell"].split("/", 1)[1], {})}
        else:
            expected = PRESETS.get(preset or "")
        if preset and row.get("preset_settings") != expected:
            continue  # run with other settings of its preset: trained again here
        target = root / row["part"] / ("" if sweep else "cells") / row["cell"] / "result.json"
        if not target.exists():
            atomic_write_json(target, {k: v for k, v in row.items() if k != "part"})
            count += 1
    return count


def write_report(root: Path, cfg: StudyConfig) -> dict[str, Any]:
    """``table.json``, ``table.md``, ``cells.jsonl`` and the plots from the cells done so far."""
    table = collect(root, cfg)
    cells = []
    for part in parts(cfg):
        for p in [*sorted((root / part.name / "cells").glob("*/result.json")),
                  *sorted((root / part.name / "sweep").glob("*/result.json"))]:
            cells.append({"part": part.name, **json.loads(p.read_text())})
    atomic_write_jsonl(root / "cells.jsonl", cells)
    atomic_write_json(root / "table.json", table)
    (root / "table.md").write_text(markdown(table), encoding="utf-8")
    plot(table, root)
    return table
