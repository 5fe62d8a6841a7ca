"""Accuracy of a model (and optional adapter) on a question set.

Writes ``metrics.json`` (accuracy strict and flexible, n, Wilson 95% interval) and
``predictions.jsonl`` into ``--out``. Interrupted runs resume: rerun the same command.

Examples::

    nlft eval --run runs/nlft --limit 50        # the run's model and adapter, into runs/nlft/eval
    nlft eval --model smollm2 --adapter runs/nlft/adapter --limit 50 --out runs/nlft/eval
    nlft eval --dataset gsm8k --split test --temperature 0.6 --max-new-tokens 512 --seed 1 --out eval-sampled
"""

from __future__ import annotations

import argparse
import json

from nlft.commands._types import OldName, add_answer_type_argument, at_least_one


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model name or path (default: the run's, else smollm2)")
    parser.add_argument("--adapter", default=None, help="PEFT adapter folder to apply on the model")
    parser.add_argument("--run", default=None,
                        help="a run directory of `nlft train`: evaluate its final model and adapter")
    parser.add_argument("--dataset", dest="data", default="gsm8k",
                        help="the questions: gsm8k, a reasoning-gym task (chain_sum, rg:NAME, ...), humaneval, or a "
                             "JSONL/CSV file (default: gsm8k; see nlft tasks)")
    parser.add_argument("--data", dest="data", action=OldName, new="--dataset")  # its name before 0.2
    parser.add_argument("--data-dir", default=None, help="GSM8K folder (default: $NLFT_GSM8K_DIR)")
    add_answer_type_argument(parser)
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--limit", type=at_least_one, default=None, help="evaluate the first N questions only")
    parser.add_argument("--out", default=None,
                        help="output folder for metrics.json and predictions.jsonl (default with --run: RUN/eval)")
    parser.add_argument("--batch-size", type=int, default=16, help="questions per generation batch (default 16)")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="default 512 (the paper's)")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="0 = greedy (default); the paper samples at 0.6")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (and reasoning-gym seed)")
    parser.add_argument("--prompt", default=None,
                        help="'solve' (the paper's A.2 instruction), 'base' (the short solve prompt) or a file "
                             "holding a template with {question}; default: the run's training prompt with --run, "
                             "else 'solve'. Tasks other than numbers have one solve prompt of their own, which "
                             "every name gives")
    parser.add_argument("--no-chat-template", action="store_true", help="use plain prompts")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default), bfloat16, float16 or auto")
    parser.add_argument("--backend", choices=("auto", "hf", "vllm"), default="auto",
                        help="auto: vLLM when installed and a GPU is present, else Hugging Face generate")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Evaluate (:func:`nlft.eval.accuracy.evaluate_model`); write metrics.json; print the accuracy."""
    from pathlib import Path

    from nlft.eval.accuracy import METRICS, evaluate_model
    from nlft.tasks.registry import common_task, dataset_task, resolve_prompt
    from nlft.tasks.sources import load_questions
    from nlft.train.rundir import run_final, run_prompt
    from nlft.utils.files import DataError, atomic_write_json, lock_dir

    if args.prompt:  # a bad --prompt fails before any question is read
        resolve_prompt(args.prompt, dataset_task(args.data, args.answer_type))
    if args.out is None:
        if not args.run:
            raise DataError("no output folder: give --out DIR (or --run RUN, which writes into RUN/eval)")
        args.out = str(Path(args.run) / "eval")
    if args.run:
        args.model, args.adapter = run_final(args.run, args.model, args.adapter)
    if args.adapter and not Path(args.adapter).is_dir():
        raise DataError("adapter folder not found (--adapter)", path=args.adapter)
    args.model = args.model or "smollm2"
    rows = load_questions(args.data, data_dir=args.data_dir, split=args.split, limit=args.limit, seed=args.seed,
                          answer_type=args.answer_type)
    template = resolve_prompt(args.prompt, common_task(rows)) if args.prompt else (
        run_prompt(args.run) if args.run else None) or resolve_prompt(None, common_task(rows))
    if args.run:
        from nlft.train.selection import check_not_validation

        check_not_validation(args.run, rows)
    lock_dir(args.out)
    metrics = evaluate_model(
        args.model, rows, adapter=args.adapter, backend=args.backend, dtype=args.dtype, out_dir=args.out,
        batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        top_p=args.top_p, seed=args.seed, limit=args.limit, template=template,
        use_chat_template=False if args.no_chat_template else None, progress=not args.no_progress, source=args.data)
    metrics.update(data=args.data, split=args.split)
    atomic_write_json(Path(args.out) / METRICS, metrics)
    if args.run and Path(args.out).resolve() == (Path(args.run) / "eval").resolve():
        from nlft.train.hub import write_model_card

        write_model_card(args.run)  # the card now carries the accuracy
    keys = ("accuracy_strict", "ci95_strict", "accuracy_flexible", "ci95_flexible", "n")
    print(json.dumps({k: metrics[k] for k in keys}))
    (slo, shi), (flo, fhi) = metrics["ci95_strict"], metrics["ci95_flexible"]
    print(f"accuracy strict {metrics['accuracy_strict']:.2%} (95% CI {slo:.2%}-{shi:.2%}), flexible "
          f"{metrics['accuracy_flexible']:.2%} (95% CI {flo:.2%}-{fhi:.2%}), n={metrics['n']} -> {args.out}")
    return 0
