"""Accuracy of a model (and optional adapter) on a question set.

Writes ``metrics.json`` (accuracy strict and flexible, n, Wilson 95% interval) and
``predictions.jsonl`` into ``--out``. Interrupted runs resume: rerun the same command.

With an adapter (``--run`` or ``--adapter``), the accuracy is compared with the base model's on the
same questions when its predictions made with the same settings are found (``base-OUT`` next to
``--out``, ``RUN/base-eval``, or the quickstart's ``base-eval`` next to the run): the paired change,
strict and flexible, with the questions gained and lost and McNemar's exact p-value, printed and kept
in ``metrics.json`` under ``vs_base``. ``--vs-base`` evaluates the base model first when they are not
there (into ``base-OUT``).

Examples::

    nlft eval --run runs/nlft --limit 50        # the run's model and adapter, into runs/nlft/eval
    nlft eval --run runs/nlft --limit 50 --vs-base   # and the base model, into runs/nlft/base-eval, paired
    nlft eval --model smollm2 --adapter runs/nlft/adapter --limit 50 --out runs/nlft/eval
    nlft eval --dataset gsm8k --split test --temperature 0.6 --max-new-tokens 512 --seed 1 --out eval-sampled
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nlft.commands._dataset_args import add_file_arguments, file_options, questions_of_run
from nlft.commands._types import OldName, add_answer_type_argument, at_least_one
from nlft.tasks.base import PROMPT_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model name or path (default: the run's, else smollm2)")
    parser.add_argument("--adapter", default=None, help="PEFT adapter folder to apply on the model")
    parser.add_argument("--run", default=None,
                        help="a run directory of `nlft train`: evaluate its final model and adapter")
    parser.add_argument("--dataset", dest="data", default=None,
                        help="the questions: gsm8k, a reasoning-gym task (chain_sum, rg:NAME, ...), humaneval, or a "
                             "JSONL/JSON/CSV file (default: with --run the held-out part of the run's own questions, "
                             "else gsm8k; see nlft tasks)")
    parser.add_argument("--data", dest="data", action=OldName, new="--dataset")  # its name before 0.2
    parser.add_argument("--data-dir", default=None, help="GSM8K folder (default: $NLFT_GSM8K_DIR)")
    add_answer_type_argument(parser)
    parser.set_defaults(answer_type=None)  # None: the run's, else number
    add_file_arguments(parser)
    parser.add_argument("--allow-trained", action="store_true",
                        help="with --run: evaluate questions the run trained on too (refused by default)")
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
                        help=f"a built-in prompt by name, {', '.join(PROMPT_NAMES)} (for numbers: the paper's A.2 "
                             "instruction with worked examples, the short solve prompt, the one-line prompt; another "
                             "task: its own solve prompt, which 'solve' and 'base' give, and its brief one), or a "
                             "file holding a template with {question}; default: the run's training prompt with "
                             "--run, else 'solve'")
    parser.add_argument("--no-chat-template", action="store_true", help="use plain prompts")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default), bfloat16, float16 or auto")
    parser.add_argument("--backend", choices=("auto", "hf", "vllm"), default="auto",
                        help="auto: vLLM when installed and a GPU is present, else Hugging Face generate")
    parser.add_argument("--vs-base", action="store_true",
                        help="with --run or --adapter: also evaluate the base model (without the adapter) on the "
                             "same questions and settings, into base-OUT next to --out, unless its predictions are "
                             "there; the paired change against it is printed whenever they are")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Evaluate (:func:`nlft.eval.accuracy.evaluate_model`); write metrics.json; print the accuracy (and the change
    against the base model when its predictions are found)."""
    from nlft.eval.accuracy import METRICS, evaluate_model
    from nlft.eval.against_base import base_folder, format_vs_base, vs_base
    from nlft.tasks.registry import common_task, dataset_task, resolve_prompt
    from nlft.tasks.sources import load_questions
    from nlft.train.rundir import run_base_model, run_final, run_prompt
    from nlft.utils.files import DataError, atomic_write_json, lock_dir

    if args.run:
        run_final(args.run)  # a folder that is no run fails first
        questions_of_run(args)
    args.data, args.answer_type = args.data or "gsm8k", args.answer_type or "number"
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
    options = file_options(args)
    rows = load_questions(args.data, data_dir=args.data_dir, split=args.split, limit=args.limit, seed=args.seed,
                          answer_type=args.answer_type, **options)
    template = resolve_prompt(args.prompt, common_task(rows)) if args.prompt else (
        run_prompt(args.run) if args.run else None) or resolve_prompt(None, common_task(rows))
    if args.run:
        from nlft.train.selection import check_not_trained, check_not_validation

        check_not_validation(args.run, rows)
        if not args.allow_trained:
            check_not_trained(args.run, rows, source=args.data)
    base_model = args.model if args.adapter else run_base_model(args.run) if args.run else None
    if args.vs_base and base_model is None:
        raise DataError("--vs-base compares a model with its base model: give --run RUN or --adapter DIR")
    lock_dir(args.out)
    settings = {"backend": args.backend, "dtype": args.dtype, "batch_size": args.batch_size,
                "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
                "seed": args.seed, "limit": args.limit, "template": template,
                "use_chat_template": False if args.no_chat_template else None, "progress": not args.no_progress,
                "source": args.data}
    metrics = evaluate_model(args.model, rows, adapter=args.adapter, out_dir=args.out, **settings)
    metrics.update(data=args.data, split=args.split)
    note = None
    if base_model is not None:
        if args.vs_base:
            lock_dir(base_folder(args.out))
            evaluate_model(base_model, rows, adapter=None, out_dir=base_folder(args.out), **settings)
        metrics["vs_base"], note = vs_base(metrics, args.out, args.run)
    atomic_write_json(Path(args.out) / METRICS, metrics)
    if args.run and Path(args.out).resolve() == (Path(args.run) / "eval").resolve():
        from nlft.train.hub import write_model_card

        write_model_card(args.run)  # the card now carries the accuracy
    (slo, shi), (flo, fhi) = metrics["ci95_strict"], metrics["ci95_flexible"]
    print(f"accuracy strict {metrics['accuracy_strict']:.2%} (95% CI {slo:.2%}-{shi:.2%}), flexible "
          f"{metrics['accuracy_flexible']:.2%} (95% CI {flo:.2%}-{fhi:.2%}), n={metrics['n']} -> {args.out}")
    if metrics.get("vs_base"):
        print(format_vs_base(metrics["vs_base"]))
    elif note:
        print(note)
    return 0
