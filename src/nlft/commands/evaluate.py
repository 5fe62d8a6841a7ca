"""Accuracy of a model (and optional adapter) on a question set.

Writes ``metrics.json`` (accuracy strict and flexible, n, Wilson 95% interval) and
``predictions.jsonl`` into ``--out``. Interrupted runs resume: rerun the same command.

Examples::

    nlft eval --run runs/nlft --limit 50        # the run's model and adapter, into runs/nlft/eval
    nlft eval --model smollm2 --adapter runs/nlft/adapter --limit 50 --out runs/nlft/eval
    nlft eval --data gsm8k --split test --temperature 0.6 --max-new-tokens 512 --seed 1 --out eval-sampled
"""

from __future__ import annotations

import argparse
import json

from nlft.commands._data_args import at_least_one


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model name or path (default: the run's, else smollm2)")
    parser.add_argument("--adapter", default=None, help="PEFT adapter folder to apply on the model")
    parser.add_argument("--run", default=None,
                        help="a run directory of `nlft train`: evaluate its final model and adapter")
    parser.add_argument("--data", default="gsm8k",
                        help="gsm8k, a reasoning-gym task (chain_sum, ...), or a JSONL/CSV file (default: gsm8k)")
    parser.add_argument("--data-dir", default=None, help="GSM8K folder (default: $NLFT_GSM8K_DIR)")
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
                             "else 'solve'")
    parser.add_argument("--no-chat-template", action="store_true", help="use plain prompts")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default), bfloat16, float16 or auto")
    parser.add_argument("--backend", choices=("auto", "hf", "vllm"), default="auto",
                        help="auto: vLLM when installed and a GPU is present, else Hugging Face generate")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_template(prompt: str) -> str:
    """'solve', 'base' or a template file path -> template text with ``{question}``."""
    from pathlib import Path

    from nlft.eval.accuracy import TEMPLATES

    if prompt in TEMPLATES:
        return TEMPLATES[prompt]
    path = Path(prompt)
    if not path.is_file():
        raise ValueError(f"--prompt must be one of {', '.join(TEMPLATES)} or a template file, got {prompt!r}")
    text = path.read_text(encoding="utf-8")
    if "{question}" not in text:
        raise ValueError(f"{path}: the prompt template must contain {{question}}")
    return text


def run_prompt(run_dir: str) -> str | None:
    """The prompt a run of `nlft train` trained under (its manifest), or None for runs that do not record it."""
    from pathlib import Path

    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        return None
    prompt = json.loads(path.read_text(encoding="utf-8")).get("prompt") or {}
    return prompt.get("template")


def run_model(run_dir: str, model: str | None, adapter: str | None) -> tuple[str, str | None]:
    """The final ``(model, adapter)`` recorded in a run's manifest; explicit values win."""
    from pathlib import Path

    from nlft.utils.files import DataError

    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise DataError("not a run directory of `nlft train` (no manifest.json)", path=run_dir)
    final = json.loads(path.read_text(encoding="utf-8")).get("final")
    if not final:
        raise DataError("the run has not finished: its manifest has no final model", path=path, field="final")
    from nlft.train.rundir import resolve_run_path

    # The manifest's paths are relative to the run directory: the command works from any folder.
    return (model or resolve_run_path(final["model"], run_dir),
            adapter or resolve_run_path(final.get("adapter"), run_dir))


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nlft.eval.accuracy import METRICS, evaluate, hf_generate_fn, vllm_available, vllm_generate_fn
    from nlft.tasks.sources import load_questions
    from nlft.utils.files import DataError, atomic_write_json, lock_dir
    from nlft.utils.models import load_model, load_tokenizer, resolve_model_path

    template = resolve_template(args.prompt) if args.prompt else (run_prompt(args.run) if args.run else None)
    template = template or resolve_template("solve")
    if args.out is None:
        if not args.run:
            raise DataError("no output folder: give --out DIR (or --run RUN, which writes into RUN/eval)")
        args.out = str(Path(args.run) / "eval")
    if args.run:
        args.model, args.adapter = run_model(args.run, args.model, args.adapter)
    if args.adapter and not Path(args.adapter).is_dir():
        raise DataError("adapter folder not found (--adapter)", path=args.adapter)
    args.model = args.model or "smollm2"
    rows = load_questions(args.data, data_dir=args.data_dir, split=args.split, limit=args.limit, seed=args.seed)
    if args.run:
        from nlft.train.selection import check_not_validation

        check_not_validation(args.run, rows)
    lock_dir(args.out)
    tokenizer = load_tokenizer(args.model)
    chat = False if args.no_chat_template else None
    backend = args.backend
    if backend == "auto":
        backend = "vllm" if vllm_available() else "hf"
    if backend == "vllm":
        model = None
        generate = vllm_generate_fn(resolve_model_path(args.model), tokenizer, adapter=args.adapter,
                                    max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                    top_p=args.top_p, seed=args.seed, use_chat_template=chat,
                                    dtype=args.dtype or "auto")
    else:
        import torch

        model = load_model(args.model, adapter=args.adapter, dtype=args.dtype)
        if args.adapter and hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()  # LoRA folded into the weights: no extra matmuls per token
        if torch.cuda.is_available():
            model = model.to("cuda")
        generate = hf_generate_fn(model, tokenizer, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                                  temperature=args.temperature, top_p=args.top_p, use_chat_template=chat)
    metrics = evaluate(
        model, tokenizer, rows, out_dir=args.out, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, top_p=args.top_p, seed=args.seed, limit=args.limit, template=template,
        use_chat_template=chat, generate=generate,
        progress=not args.no_progress, source=args.data,
    )
    metrics.update(model=args.model, adapter=args.adapter, data=args.data, split=args.split, backend=backend)
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
