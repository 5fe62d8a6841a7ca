"""How often the "entirely wrong sample" rule fires: the erroneous-token share of each incorrect output.

The reference code gives the irrelevant tokens of an incorrect output likelihood (sqrt(P_std)) unless
more than 6% of its tokens are erroneous; ``nlft`` calls an output entirely wrong only above
``max_error_fraction`` (0.5 by default). This script measures, with the model at its initial
weights (the first step of training), the erroneous share of every incorrect output of an NLFT data
file and reports the share of incorrect outputs on which each threshold fires, with quantiles of the
share and of the output length.

    python benchmarks/error_fraction.py --data study/main/data/nlft-n200.jsonl --json error_fraction.json
    python benchmarks/error_fraction.py --data runs/gsm8k/nlft.jsonl --thresholds 0.06 0.25 0.5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def erroneous_shares(examples: list[dict], *, r0: float, p0: float) -> list[tuple[float, int]]:
    """``(erroneous share, tokens)`` of every incorrect example of :func:`nlft.report.saliency.compute_token_probs`."""
    import torch

    from nlft.method.scales import error_share, incorrect_token_scales

    out = []
    for ex in examples:
        if ex["correct"]:
            continue
        pb, ps, pj = (torch.tensor(ex[k]) for k in ("p_base", "p_std", "p_judge"))
        _, err = incorrect_token_scales(pb, ps, pj, r0=r0, p0=p0)
        out.append((error_share(err, torch.ones_like(err)).item(), len(ex["tokens"])))
    return out


def summarize(shares: list[tuple[float, int]], thresholds: list[float]) -> dict:
    """Firing rate of each threshold, and quantiles of the share and of the length."""
    values = sorted(s for s, _ in shares)
    lengths = sorted(n for _, n in shares)

    def q(xs: list, p: float) -> float:
        return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")

    return {
        "incorrect_outputs": len(values),
        "fires": {f"{t:g}": (sum(v > t for v in values) / len(values) if values else None) for t in thresholds},
        "share_quantiles": {f"p{int(p * 100)}": q(values, p) for p in (0.1, 0.25, 0.5, 0.75, 0.9)},
        "share_mean": statistics.fmean(values) if values else None,
        "with_no_erroneous_token": sum(v == 0 for v in values) / len(values) if values else None,
        "tokens_median": q(lengths, 0.5),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="an NLFT data file (nlft.jsonl)")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--limit", type=int, default=None, help="first N rows only")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.06, 0.5])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", default=None, help="write the result here")
    args = parser.parse_args(argv)

    from nlft.report.saliency import compute_token_probs
    from nlft.train.config import NLFTConfig
    from nlft.utils.files import read_jsonl
    from nlft.utils.models import load_model, load_tokenizer

    records = list(read_jsonl(args.data))[: args.limit]
    config = NLFTConfig(output_dir=str(Path.cwd() / "nlft-output"), report_to=[])
    examples = compute_token_probs(load_model(args.model), load_tokenizer(args.model), records, config=config,
                                   batch_size=args.batch_size, source=args.data, progress=False)
    result = {"data": args.data, "model": args.model, "rows": len(records), "r0": config.r0,
              "p0_incorrect": config.p0_incorrect,
              **summarize(erroneous_shares(examples, r0=config.r0, p0=config.p0_incorrect), args.thresholds)}
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
