"""How much of an output one saliency token's phrase covers, under each phrase rule.

For every output of an NLFT data file, with the model at its initial weights, this script computes
the phrase span each token would get if it were a saliency (or erroneous) token: the cosine rule at
several thresholds (hidden states of the X_base view, :func:`nlft.method.clustering.cosine_spans`),
the word rule (tokenizer offsets) and the reference code's walk (a running centre, ``(centre + h) / 2``
after each token that joins, keeping neighbours whose cosine *distance* to it is above 0.4, as it is
written; and the same walk with similarity >= 0.6, the reading without the sign slip). It reports the
mean share of an output that one token's phrase covers (tokens of the phrase / tokens of the output,
averaged over tokens, then over outputs) and the mean cosine similarity of adjacent tokens.

    python benchmarks/phrase_coverage.py --data study/chain_sum/data/draws/n50-s0.jsonl --json coverage.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def reference_walk(hidden: list, *, keep: str = "distance>0.4") -> list[tuple[int, int]]:
    """The reference code's phrase of every token: walk left, then right, from it, comparing the next neighbour with
    a running centre (``(centre + h) / 2`` after each join, not reset between the two walks)."""
    import torch

    spans = []
    for i in range(len(hidden)):
        centre = hidden[i]
        lo = hi = i

        def joins(h: torch.Tensor, c: torch.Tensor) -> bool:
            sim = torch.nn.functional.cosine_similarity(c[None], h[None]).item()
            return (1 - sim) > 0.4 if keep == "distance>0.4" else sim >= 0.6

        j = i - 1
        while j >= 0 and joins(hidden[j], centre):
            centre, lo, j = (centre + hidden[j]) / 2, j, j - 1
        j = i + 1
        while j < len(hidden) and joins(hidden[j], centre):
            centre, hi, j = (centre + hidden[j]) / 2, j, j + 1
        spans.append((lo, hi))
    return spans


def coverage(spans: list[tuple[int, int]], n: int) -> float:
    """Mean share of the ``n`` tokens that one token's phrase covers."""
    return statistics.fmean((hi - lo + 1) / n for lo, hi in spans)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="NLFT records (JSONL)")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.6, 0.7, 0.8, 0.9])
    parser.add_argument("--max-span", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)

    import torch

    from nlft.method.clustering import cosine_spans, word_spans
    from nlft.method.logps import view_logps
    from nlft.train.trainer import NLFTCollator
    from nlft.train.views import tokenize_record, training_prompt
    from nlft.utils.files import read_jsonl
    from nlft.utils.models import ensure_pad_token, load_model, load_tokenizer

    records = list(read_jsonl(args.data))[: args.limit]
    tokenizer = load_tokenizer(args.model)
    ensure_pad_token(tokenizer)
    model = load_model(args.model).eval()
    template, chat = training_prompt(records, source=args.data)
    collate = NLFTCollator(tokenizer.pad_token_id, (), ())
    rules: dict[str, list[float]] = {**{f"cosine {t:g}": [] for t in args.thresholds}, "word": [],
                                     "reference walk (as written)": [], "reference walk (similarity >= 0.6)": []}
    adjacent: list[float] = []
    lengths = []
    for i, row in enumerate(records):
        feature = {**tokenize_record(row, tokenizer, base_template=template, use_chat_template=chat, views=()),
                   "row_idx": i}
        batch = collate([feature])
        with torch.no_grad():
            _, hidden = view_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                   return_hidden=True)[:2]
        n = len(feature["response_ids"])
        mask = torch.ones(1, n, dtype=torch.bool)
        states = hidden[0, :n].float()
        lengths.append(n)
        unit = torch.nn.functional.normalize(states, dim=-1)
        if n > 1:
            adjacent.append((unit[:-1] * unit[1:]).sum(-1).mean().item())
        for t in args.thresholds:
            lo, hi = cosine_spans(states[None], mask, threshold=t, max_span=args.max_span)
            rules[f"cosine {t:g}"].append(coverage(list(zip(lo[0].tolist(), hi[0].tolist())), n))
        lo, hi = word_spans(batch["word_ids"][:, :n])
        rules["word"].append(coverage(list(zip(lo[0].tolist(), hi[0].tolist())), n))
        rules["reference walk (as written)"].append(coverage(reference_walk(list(states)), n))
        rules["reference walk (similarity >= 0.6)"].append(coverage(reference_walk(list(states), keep="sim"), n))
    result = {"data": args.data, "outputs": len(records), "mean_output_tokens": statistics.fmean(lengths),
              "mean_adjacent_cosine": statistics.fmean(adjacent) if adjacent else None, "max_span": args.max_span,
              "coverage": {k: round(statistics.fmean(v), 4) for k, v in rules.items()}}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
