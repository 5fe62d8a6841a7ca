"""The drift monitor replayed on a study's NLFT runs, against what the validation questions say of each run.

For every NLFT cell of a study directory (``nlft study --out DIR``, the selection's candidates included), this script
replays :func:`nlft.train.monitor.drift` over the run's ``log_history.jsonl`` at several factors and sets beside it
the run's validation accuracy at each evaluation and the base model's. A run "fell" when a validation evaluation after
the first scored below the base model; a factor separates well when it fires on the runs that fell (before their
fall) and on none of the others. Only validation questions are read, never held-out ones.

    python benchmarks/drift_replay.py --study study --json drift.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

FACTORS = (1.2, 1.5, 2.0)


def replay(study: Path, factors: tuple[float, ...] = FACTORS) -> list[dict[str, Any]]:
    """One row per NLFT cell: task, cell, the validation curve, base accuracy, whether it fell, and per factor the
    step where the monitor fires on the logged history (None: never)."""
    from nlft.train.monitor import drift
    from nlft.utils.files import read_jsonl

    rows = []
    for result_path in sorted(study.glob("*/cells/*/result.json")):
        result = json.loads(result_path.read_text())
        history = result_path.parent / "run" / "log_history.jsonl"
        if result.get("method") != "nlft" or not history.exists():
            continue
        base_path = result_path.parent.parent / "base" / "result.json"
        base = json.loads(base_path.read_text())["val_flexible"] if base_path.exists() else None
        logs = list(read_jsonl(history))
        curve = result.get("val_curve") or []
        fell = [c["step"] for c in curve if base is not None and c["flexible"] < base]
        reports = {str(f): drift(logs, f) for f in factors}
        rows.append({"task": result["task"], "cell": result["cell"], "base_val": base,
                     "val_curve": [(c["step"], c["flexible"]) for c in curve], "fell_at": fell[0] if fell else None,
                     "max_nll_ratio": drift(logs, float("inf")).max_nll_ratio,
                     "fires_at": {k: r.step if r.fired else None for k, r in reports.items()},
                     "stopped": (result.get("drift") or {}).get("step")})
    return rows


def summary(rows: list[dict[str, Any]], factors: tuple[float, ...] = FACTORS) -> dict[str, Any]:
    """Per factor: runs that fell and were caught (fired at or before the first evaluation below base), fell and were
    missed, and healthy runs it fired on (false alarms)."""
    out = {}
    for f in factors:
        key = str(f)
        fell = [r for r in rows if r["fell_at"] is not None]
        caught = [r for r in fell if r["fires_at"][key] is not None and r["fires_at"][key] <= r["fell_at"]]
        alarms = [r for r in rows if r["fell_at"] is None and r["fires_at"][key] is not None]
        out[key] = {"runs": len(rows), "fell": len(fell), "caught_before_the_fall": len(caught),
                    "false_alarms": len(alarms)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", required=True, help="a study directory")
    parser.add_argument("--json", default=None, help="write the rows and the summary here")
    args = parser.parse_args(argv)
    rows = replay(Path(args.study))
    report = {"summary": summary(rows), "runs": rows}
    print(json.dumps(report["summary"], indent=2))
    for r in rows:
        print(f"{r['task'][:24]:24} {r['cell']:26} base {r['base_val']} val {r['val_curve']} "
              f"max ratio {r['max_nll_ratio']:.2f} fires {r['fires_at']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
