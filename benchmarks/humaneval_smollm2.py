"""HumanEval pass@1 (greedy) of SmolLM2-135M-Instruct, graded by the sandboxed tests, with the time they take.

Generates with the project's generation code (chat template, greedy, no stop at an answer line) for
the first ``--n`` HumanEval problems with the code task's solve prompt, runs each output's tests
in the sandbox (:mod:`nlft.tasks.sandbox`), writes the rule judge's judgment of every failure, and
reports pass@1 and the sandbox's wall time (total and per program). ``--json`` writes it all.

    python benchmarks/humaneval_smollm2.py --json humaneval_smollm2.json
    python benchmarks/humaneval_smollm2.py --n 164 --max-new-tokens 400 --model smollm2
    python benchmarks/humaneval_smollm2.py --reuse humaneval_smollm2.json   # grade the same outputs again
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--n", type=int, default=20, help="the first N HumanEval problems (default 20)")
    parser.add_argument("--max-new-tokens", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--timeout", type=float, default=10.0, help="sandbox wall-clock limit per program, s")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--reuse", default=None, help="grade the outputs of an earlier --json file (no generation)")
    args = parser.parse_args(argv)

    import torch

    from nlft.data.build import BackendSpec, complete_texts
    from nlft.tasks.code import HumanEvalTask, build_program, load_humaneval
    from nlft.tasks.prompts import render
    from nlft.tasks.sandbox import run_many

    torch.set_num_threads(args.threads)
    task = HumanEvalTask(timeout_s=args.timeout)
    rows = load_humaneval(limit=args.n)
    prompts = [render(task.solve_template, question=r["question"]) for r in rows]
    if args.reuse:
        earlier = json.loads(Path(args.reuse).read_text())
        by_id = {p["id"]: p for p in earlier["problems"]}
        outputs = [(by_id[r["id"]]["output"], by_id[r["id"]]["tokens"]) for r in rows]
        generation_s = earlier["summary"]["generation_s"]
    else:
        spec = BackendSpec(backend="hf", model=args.model)
        started = time.monotonic()
        outputs = complete_texts(spec, prompts, [0] * len(prompts), max_new_tokens=args.max_new_tokens,
                                 temperature=0.0, top_p=1.0, batch_size=args.batch_size,
                                 stop_at_answer=task.stops_at_answer)
        generation_s = time.monotonic() - started

    # the grader itself: every canonical solution must pass
    started = time.monotonic()
    canonical = run_many([build_program(r["reference"], r).source for r in rows], workers=2, timeout_s=args.timeout)
    canonical_s = time.monotonic() - started

    problems = []
    started = time.monotonic()
    for row, (text, n_tokens) in zip(rows, outputs):
        t0 = time.monotonic()
        strict = task.is_correct(text, row, "strict")
        tested_s = time.monotonic() - t0
        flexible = task.is_correct(text, row, "flexible")
        result = task.run(text, row, "strict")
        problems.append({"id": row["id"], "passed": strict, "passed_flexible": flexible, "tokens": n_tokens,
                         "kind": result.kind if result else "no-code",
                         "test_s": round(tested_s, 4), "sandbox_s": result.duration_s if result else 0.0,
                         "judgment": task.rule_judgment(text, row), "output": text})
    grading_s = time.monotonic() - started
    ran = [p for p in problems if p["kind"] not in ("no-code", "no-function")]  # programs the sandbox ran
    sandbox_total = sum(p["sandbox_s"] for p in ran)
    summary = {
        "model": args.model, "n": len(rows), "max_new_tokens": args.max_new_tokens, "greedy": True,
        "pass_at_1": sum(p["passed"] for p in problems) / len(problems),
        "pass_at_1_flexible": sum(p["passed_flexible"] for p in problems) / len(problems),
        "passed": sum(p["passed"] for p in problems),
        "generation_s": round(generation_s, 1),
        "grading_and_judging_s": round(grading_s, 2),
        "programs_run": len(ran),
        "sandbox_total_s": round(sandbox_total, 3),
        "sandbox_per_program_s": round(sandbox_total / len(ran), 4) if ran else None,
        "canonical_passed": sum(r.passed for r in canonical),
        "canonical_wall_s_2_workers": round(canonical_s, 3),
        "canonical_per_program_s": round(sum(r.duration_s for r in canonical) / len(canonical), 4),
        "kinds": {k: sum(p["kind"] == k for p in problems) for k in sorted({p["kind"] for p in problems})},
    }
    for p in problems:
        print(f"{p['id']:>14}  {'PASS' if p['passed'] else 'fail'}  {p['sandbox_s']:.3f} s  {p['judgment'][:110]}")
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "problems": problems}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
