"""The quickstart as a library call: prepare -> train -> evaluate -> saliency map -> plots, offline.

:func:`run_quickstart` runs the five steps of ``nlft quickstart`` (see :mod:`nlft.commands.quickstart`)
into one folder and returns a :class:`QuickstartResult`; each step reports on stderr as it goes. An
interrupted quickstart resumes where it stopped: call it again with the same settings.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DATASET = "chain_sum:max_terms=3,max_digits=2"


@dataclass
class QuickstartConfig:
    """The quickstart's settings (the defaults of ``nlft quickstart``)."""

    out: str = "nlft-quickstart"
    model: str = "smollm2"
    dataset: str | None = None  # None: DEFAULT_DATASET, or gsm8k when data_dir is given
    data_dir: str | None = None
    answer_type: str = "number"  # of a question file (see nlft tasks)
    prompt: str = "brief"
    train_size: int = 48
    eval_size: int = 200
    epochs: float = 3.0
    lr: float = 2e-4
    max_new_tokens: int = 48
    temperature: float = 0.0
    batch_size: int = 32
    saliency_limit: int = 16
    seed: int = 0
    progress: bool = True


@dataclass
class QuickstartResult:
    """Where every result of a quickstart is, and its accuracy before and after training."""

    out: Path
    train_file: Path
    adapter: Path
    run_dir: Path
    held_file: Path
    page: Path
    plots: list[Path]
    base: dict[str, Any]
    tuned: dict[str, Any]
    change: dict[str, Any]
    minutes: float
    counts: dict[str, int] = field(default_factory=dict)

    def files(self) -> list[tuple[str, Path]]:
        """``(label, path)`` of every result, in the order they are shown."""
        return [("training data", self.train_file), ("adapter", self.adapter),
                ("metrics", self.run_dir / "metrics.json"), ("base-model metrics", self.out / "base-eval" /
                                                             "metrics.json"),
                ("held-out questions", self.held_file), ("saliency map", self.page),
                *((f"plot {p.stem.removeprefix('plot_')}", p) for p in self.plots)]


def _step(number: int, title: str) -> float:
    print(f"\n[{number}/5] {title}", file=sys.stderr, flush=True)
    return time.perf_counter()


def _done(start: float, what: str) -> None:
    print(f"      {what} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)


def run_quickstart(cfg: QuickstartConfig, *, run_args: dict[str, Any] | None = None) -> QuickstartResult:
    """Run the five steps into ``cfg.out``; returns where the results are.

    ``run_args``: the settings a rerun must match (``quickstart_args.json``); default: ``cfg`` but
    ``out`` and ``progress``. Raises DataError on bad settings or data.
    """
    from nlft.utils.files import DataError, atomic_write_jsonl, lock_dir

    for name in ("train_size", "eval_size", "batch_size", "max_new_tokens", "saliency_limit"):
        if getattr(cfg, name) < 1:
            raise DataError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if cfg.epochs <= 0:
        raise DataError(f"--epochs must be positive, got {cfg.epochs}")
    dataset = cfg.dataset or ("gsm8k" if cfg.data_dir else DEFAULT_DATASET)
    if dataset == "gsm8k" and not cfg.data_dir:
        raise DataError("the quickstart reads GSM8K from disk: give --data-dir with train.jsonl and test.jsonl")
    out = lock_dir(cfg.out)  # one quickstart per folder at a time
    from nlft.utils.resume import check_run_args

    # A rerun resumes only with the same settings: two runs are never mixed in one folder.
    settings = run_args if run_args is not None else {k: v for k, v in asdict(cfg).items()
                                                      if k not in ("out", "progress")}
    if settings.get("answer_type") == "number":  # the default: folders of earlier releases resume
        settings = {k: v for k, v in settings.items() if k != "answer_type"}
    settings = {**settings, "data_dir": str(Path(cfg.data_dir).resolve()) if cfg.data_dir else None}
    check_run_args(out, settings, name="quickstart_args.json")
    progress = cfg.progress
    started = time.perf_counter()

    from nlft.data.build import BackendSpec, JudgeSpec, SamplingSpec, TemplateSpec, format_summary, prepare, rule_kind
    from nlft.tasks.registry import dataset_task
    from nlft.tasks.sources import load_questions

    task = dataset_task(dataset, cfg.answer_type)
    template = task.template(cfg.prompt)  # numbers: the paper's prompt of that name; another task: its own
    # 1. Self-study data: the model answers greedily with the prompt it is trained and evaluated with (X_base).
    t = _step(1, f"prepare: {cfg.train_size} {dataset} questions -> answers -> grades -> judgments")
    questions = load_questions(dataset, data_dir=cfg.data_dir, split="train", limit=cfg.train_size, seed=cfg.seed,
                               answer_type=cfg.answer_type)
    sampling = SamplingSpec(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                            top_p=0.95 if cfg.temperature > 0 else 1.0, seed=cfg.seed, batch_size=cfg.batch_size)
    prepared = prepare(questions, out / "data", backend=BackendSpec(model=cfg.model), sampling=sampling,
                       template=TemplateSpec(text=template, name=cfg.prompt),
                       judge=JudgeSpec(kind=rule_kind(task), grading="flexible"), progress=progress)
    records, data_file = prepared.rows, prepared.nlft_file
    print("      " + format_summary(prepared.summary).replace("\n", "\n      "), file=sys.stderr)
    train_file = data_file
    if any(not r["output"].strip() for r in records):  # nothing to weight in an empty output
        n_all, records = len(records), [r for r in records if r["output"].strip()]
        if not records:
            raise DataError("every output is empty: the model wrote nothing to train on", path=data_file,
                            field="output")
        train_file = out / "data" / "nlft-train.jsonl"
        if not train_file.exists():
            atomic_write_jsonl(train_file, records)
        print(f"      {n_all - len(records)} empty outputs left out -> {train_file}", file=sys.stderr)
    _done(t, f"NLFT data: {data_file}")

    # 2. NLFT with LoRA, on the same prompt (taken from the records' provenance).
    from nlft.train import TrainOptions, run_training

    run_dir = out / "run"
    adapter = run_dir / "adapter"
    t = _step(2, f"train: NLFT, LoRA, {cfg.epochs:g} epochs on {len(records)} outputs")
    if (adapter / "adapter_config.json").exists():
        print(f"      already trained: {adapter}", file=sys.stderr)
    else:
        run_training(TrainOptions(method="nlft", data=str(train_file), out=str(run_dir), model=cfg.model,
                                  epochs=cfg.epochs, lr=cfg.lr, warmup=0.1, seed=cfg.seed, save_total_limit=1,
                                  resume=(run_dir / "manifest.json").exists(), truncation="response",
                                  no_progress=not progress))
    _done(t, f"adapter: {adapter}")

    # 3. Accuracy before and after, on held-out questions (none shares its text with a training one).
    import shutil

    from nlft.eval.accuracy import evaluate, paired_change
    from nlft.train.hub import write_model_card
    from nlft.train.rundir import EVAL_KEYS, append_eval_history
    from nlft.utils.files import read_jsonl
    from nlft.utils.models import load_model, load_tokenizer

    t = _step(3, f"evaluate: base model and NLFT model on {cfg.eval_size} held-out questions")
    tokenizer = load_tokenizer(cfg.model)
    seen = {q["question"] for q in questions}
    pool = load_questions(dataset, data_dir=cfg.data_dir, split="test", limit=2 * cfg.eval_size, seed=cfg.seed,
                          answer_type=cfg.answer_type)
    held_out = [q for q in pool if q["question"] not in seen][: cfg.eval_size]
    held_file = out / "data" / "held-out.jsonl"  # for `nlft eval --dataset` of other runs on the same questions
    if not held_file.exists():
        from nlft.tasks.sources import file_row

        atomic_write_jsonl(held_file, [file_row(q) for q in held_out])
    settings = {"batch_size": cfg.batch_size, "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed,
                "template": template, "progress": progress, "source": dataset}
    base = evaluate(load_model(cfg.model), tokenizer, held_out, out_dir=out / "base-eval", desc="eval: base model",
                    **settings)
    model = load_model(cfg.model, adapter=str(adapter))
    model.merge_adapter()  # same outputs up to float rounding, no LoRA matmuls per generated token
    tuned = evaluate(model, tokenizer, held_out, out_dir=run_dir / "eval", desc="eval: NLFT model", **settings)
    model.unmerge_adapter()
    shutil.copyfile(run_dir / "eval" / "metrics.json", run_dir / "metrics.json")
    write_model_card(run_dir)  # now with the accuracy
    if not (run_dir / "eval_history.jsonl").exists():
        append_eval_history(run_dir, 0.0, {k: base[k] for k in EVAL_KEYS if k in base})
        append_eval_history(run_dir, float(cfg.epochs), {k: tuned[k] for k in EVAL_KEYS if k in tuned})
    change = paired_change(list(read_jsonl(out / "base-eval" / "predictions.jsonl")),
                           list(read_jsonl(run_dir / "eval" / "predictions.jsonl")))
    _done(t, "accuracy: " + accuracy_line(base, tuned, change))

    # 4. Saliency map of training records, correct and incorrect, under the trained model.
    from nlft.report.saliency import compute_token_probs, page_params, token_class_counts, write_page

    t = _step(4, "saliency map")
    shown = saliency_sample(records, cfg.saliency_limit)
    examples = compute_token_probs(model, tokenizer, shown, source=str(train_file), progress=progress)
    page = write_page(out / "saliency.html", examples,
                      meta={"model": cfg.model, "adapter": str(adapter), "data": str(train_file)})
    counts = token_class_counts(examples, page_params())
    _done(t, f"saliency map: {page}\n      tokens by class: "
             + ", ".join(f"{name} {counts[name]}" for name in counts if name != "tokens"))

    # 5. Plots.
    from nlft.report.plots import plot_run

    t = _step(5, "plots")
    plots = plot_run(run_dir)
    _done(t, "plots: " + ", ".join(str(p) for p in plots))
    return QuickstartResult(out, train_file, adapter, run_dir, held_file, page, plots, base, tuned, change,
                            (time.perf_counter() - started) / 60, counts)


def saliency_sample(records: list[dict], limit: int) -> list[dict]:
    """Up to ``limit`` records for the saliency page: correct and incorrect in turn while both last."""
    wrong = [r for r in records if not r["correct"]]
    right = [r for r in records if r["correct"]]
    n_right = min(len(right), max(limit - len(wrong), limit // 2))
    right, wrong = right[:n_right], wrong[: limit - n_right]
    mixed = [r for pair in zip(right, wrong, strict=False) for r in pair]
    k = min(len(right), len(wrong))
    return mixed + right[k:] + wrong[k:]


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def accuracy_line(base: dict, tuned: dict, change: dict) -> str:
    """``base 17.0% [12.4-22.9] -> NLFT 19.5% [...] (flexible, n=200), paired change +2.5 points ...``."""
    def one(m: dict) -> str:
        lo, hi = m["ci95_flexible"]
        return f"{_pct(m['accuracy_flexible'])} [{100 * lo:.1f}-{100 * hi:.1f}]"

    numbers = not (tuned.get("settings") or {}).get("task")  # evaluations of other tasks name theirs
    flexible, strict = ("the last number", "'#### N'") if numbers else ("the answer in any usual phrasing", "'####'")
    return (f"base model {one(base)} -> NLFT {one(tuned)} (flexible grading: {flexible}; 95% intervals; "
            f"n={tuned['n']}); strict {strict} {_pct(base['accuracy_strict'])} -> {_pct(tuned['accuracy_strict'])}; "
            f"paired: {change['gained']} questions gained, {change['lost']} lost (p={change['p_value']:.2g})")


def verdict(change: dict) -> str:
    """One plain sentence on whether training changed held-out accuracy (exact paired test, 5% level)."""
    points = 100 * change["change"]
    if change["p_value"] < 0.05:
        way = "improved" if points > 0 else "lowered"
        return (f"NLFT {way} held-out accuracy by {points:+.1f} points ({change['gained']} gained, "
                f"{change['lost']} lost, p={change['p_value']:.2g}).")
    return (f"Held-out accuracy changed by {points:+.1f} points, within chance (p={change['p_value']:.2g}): on this "
            "budget NLFT does not measurably change the model. The study (docs/study.md) trains on more data.")
