"""Trained study cells and the base model on more validation questions than the selection's 100.

The preset selection scores every cell on 100 validation questions per task, where a point or two is noise (a
95% interval of about +-5 points at 7%). This script draws ``--n`` further questions of a study task's test
split that are in none of its pool, validation or held-out files (compared by question text), and scores the
base model and the kept weights of the named cells on them, greedy, under the task's prompt. It reports each
one's flexible accuracy with its 95% interval, and each cell paired with the base model: questions gained and
lost, and the sign-flip p-value of the per-question differences. The held-out questions stay unseen.

    python benchmarks/wide_validation.py --study study --task basic_arithmetic \\
        --cells sft_outputs-n50-s0 cand_initial_word-n50-s0 --n 400 --json wide.json

Predictions go to ``STUDY/<task>/wide/<cell>/`` and are reused when the script runs again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))


def fresh_questions(root: Path, task: str, n: int) -> list[dict[str, Any]]:
    """``n`` questions of ``task``'s test split in none of the study's question files, in split order."""
    from nlft.study.config import slug
    from nlft.study.data import data_dir, task_questions
    from nlft.tasks.sources import file_row, load_questions
    from nlft.utils.files import atomic_write_jsonl

    data = data_dir(root, task)
    seen = {r["question"].strip() for f in ("pool.jsonl", "val.jsonl", "heldout.jsonl")
            for r in load_questions(str(data / f))}
    out: dict[str, dict[str, Any]] = {}
    for row in task_questions(task, "test", len(seen) + 3 * n):
        key = row["question"].strip()
        if key not in seen:
            out.setdefault(key, file_row(row))
        if len(out) == n:
            break
    if len(out) < n:
        raise SystemExit(f"only {len(out)} fresh questions of {task}, {n} asked for")
    path = root / slug(task) / "wide" / "questions.jsonl"  # read back as the study reads its own question files
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(path, list(out.values()))
    return load_questions(str(path))


def score(root: Path, task: str, cell: str, rows: list[dict[str, Any]], batch_size: int, max_new_tokens: int,
          model_name: str) -> tuple[dict[str, Any], list[bool]]:
    """Metrics and per-question flexible correctness (in ``rows`` order) of one cell's kept weights."""
    from nlft.eval.accuracy import evaluate
    from nlft.study.config import slug
    from nlft.study.data import data_dir
    from nlft.utils.models import load_model, load_tokenizer

    adapter = None if cell == "base" else str(root / slug(task) / "cells" / cell / "run" / "adapter")
    tokenizer = load_tokenizer(model_name)
    model = load_model(model_name, adapter=adapter)
    if adapter:
        model = model.merge_and_unload()
    out = root / slug(task) / "wide" / cell
    template = (data_dir(root, task) / "prompt.txt").read_text(encoding="utf-8")
    metrics = evaluate(model, tokenizer, rows, out_dir=out, batch_size=batch_size, max_new_tokens=max_new_tokens,
                       progress=False, source=str(out), template=template)
    by_id = {}
    for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines():
        p = json.loads(line)
        by_id[p["id"]] = bool(p["correct_flexible"])
    return metrics, [by_id[r["id"]] for r in rows]


def main() -> None:
    from workload import emit

    from nlft.eval.accuracy import intervals
    from nlft.study.stats import paired_counts, sign_flip_p

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", required=True, help="the study folder (nlft study --out)")
    ap.add_argument("--task", required=True, help="the task's spec as the study names it (basic_arithmetic)")
    ap.add_argument("--cells", nargs="+", required=True, help="cell folders under <task>/cells/ (the base model "
                                                              "is always scored)")
    ap.add_argument("--n", type=int, default=400, help="fresh questions")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64, help="as the study's eval_max_new_tokens")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    root = Path(args.study)
    rows = fresh_questions(root, args.task, args.n)
    results: dict[str, Any] = {}
    correct: dict[str, list[bool]] = {}
    for cell in ["base", *[c for c in args.cells if c != "base"]]:
        start = time.perf_counter()
        metrics, correct[cell] = score(root, args.task, cell, rows, args.batch_size, args.max_new_tokens, args.model)
        results[cell] = {"accuracy_flexible": metrics["accuracy_flexible"], "n": metrics["n"],
                         "ci95_flexible": intervals(metrics)["ci95_flexible"], "eval_s": time.perf_counter() - start}
        if cell != "base":
            diffs, gained, lost = paired_counts([correct[cell]], [correct["base"]])
            results[cell].update({"gained_vs_base": gained, "lost_vs_base": lost, "sign_flip_p": sign_flip_p(diffs)})
        print(f"{cell}: {metrics['accuracy_flexible']:.2%} of {metrics['n']}", file=sys.stderr)
    emit({"task": args.task, "n": len(rows), "model": args.model, "cells": results}, args.json)


if __name__ == "__main__":
    main()
