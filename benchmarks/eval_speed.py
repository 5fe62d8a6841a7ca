"""Batched evaluation against one-at-a-time generation: same questions, same model, same greedy settings.

Runs :func:`nlft.eval.accuracy.evaluate` three times on the first ``--n`` GSM8K test questions: with
``--batch-size`` questions per generation batch (left padding, KV cache) and the shared prompt
prefix (instruction and few-shot examples) computed once, the same without the shared prefix, and
one question at a time (batch size 1, the prompt computed whole for every question).
Reports both wall times, the speed-up and whether the outputs agree (greedy decoding: they should,
up to rare float differences that padding introduces), and writes them as JSON with ``--json``.

    python benchmarks/eval_speed.py --json eval_speed.json
    python benchmarks/eval_speed.py --n 32 --batch-size 32 --max-new-tokens 256 --model smollm2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--data", default="gsm8k")
    parser.add_argument("--data-dir", default=os.environ.get("NLFT_GSM8K_DIR", str(REPO.parent / "shared" / "data"
                                                                                   / "gsm8k")))
    parser.add_argument("--split", default="test")
    parser.add_argument("--n", type=int, default=32, help="questions (default 32)")
    parser.add_argument("--batch-size", type=int, default=32, help="batched run's batch size (default 32)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--prompt", default="solve", help="solve (paper A.2, default) or base")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)

    import torch

    from nlft.eval.accuracy import TEMPLATES, evaluate
    from nlft.tasks.sources import load_questions
    from nlft.utils.models import load_model, load_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = load_questions(args.data, data_dir=args.data_dir, split=args.split, limit=args.n)
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, adapter=args.adapter)
    if torch.cuda.is_available():
        model = model.to("cuda")
    template = TEMPLATES[args.prompt]
    results = {}
    outputs = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = (("batched", args.batch_size, True), ("batched_no_prefix_cache", args.batch_size, False),
                ("single", 1, False))
        for name, bs, share in runs:
            start = time.perf_counter()
            metrics = evaluate(model, tokenizer, rows, out_dir=Path(tmp) / name, batch_size=bs,
                               max_new_tokens=args.max_new_tokens, template=template, progress=False,
                               share_prefix=share)
            seconds = time.perf_counter() - start
            preds = [json.loads(x) for x in (Path(tmp) / name / "predictions.jsonl").read_text().splitlines()]
            outputs[name] = {p["id"]: p["output"] for p in preds}
            results[name] = {"batch_size": bs, "shared_prefix_cache": share, "seconds": seconds,
                             "accuracy_strict": metrics["accuracy_strict"],
                             "questions_per_second": len(rows) / seconds}
            print(f"{name:24s} batch {bs:3d}: {seconds:8.1f} s  ({len(rows) / seconds:.2f} questions/s)")
    same = sum(outputs["batched"][k] == outputs["single"][k] for k in outputs["single"])
    report = {
        "model": args.model, "n": len(rows), "max_new_tokens": args.max_new_tokens, "prompt": args.prompt,
        "decoding": "greedy", "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(), **results,
        "speedup": results["single"]["seconds"] / results["batched"]["seconds"],
        "speedup_without_prefix_cache": results["single"]["seconds"] / results["batched_no_prefix_cache"]["seconds"],
        "outputs_identical": same, "outputs_identical_share": same / len(rows),
    }
    print(f"speed-up {report['speedup']:.2f}x; identical outputs {same}/{len(rows)}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
