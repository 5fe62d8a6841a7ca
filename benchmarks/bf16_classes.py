"""Token classes and scales measured in bfloat16 against float32, on SmolLM2-135M-Instruct.

Usage::

    PYTHONPATH=src python benchmarks/bf16_classes.py --rows 24 --json bf16_classes.json

The same GSM8K records (``benchmarks/workload.py``: outputs of 150-250 tokens, half of them incorrect with a
judgment naming the wrong step) are measured as the trainer measures them before its first step
(:meth:`nlft.NLFTTrainer.measure_token_classes`: the measurement views, the base view's log-probabilities and
hidden states, the phrase spans, :func:`nlft.method.scales.batch_token_scales`), once with the model in
float32, once with float32 weights under bfloat16 autocast (``--bf16`` mixed precision) and once with the
weights in bfloat16 (the log-probabilities themselves always come out in float32). Reported for each: the
share of response tokens whose class (correct: saliency / sub-saliency / irrelevant; incorrect: erroneous /
near-error / irrelevant) differs, the classes' counts in each, and the largest and mean absolute
difference of the token scales S_t and of P_base.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

CLASSES = ("saliency", "sub_saliency", "irrelevant_correct", "erroneous", "near_error", "irrelevant_incorrect")


def measure(model: Any, tokenizer: Any, records: list[dict], batch_size: int) -> dict[str, Any]:
    """Per-token class ids, scales and P_base ``(rows, R)`` of every record, with the trainer's own settings."""
    import torch

    from nlft.method.clustering import cosine_spans, spans_to_mask, word_spans
    from nlft.method.logps import IGNORE_INDEX, view_logps
    from nlft.method.scales import batch_token_scales
    from nlft.train.config import NLFTConfig
    from nlft.train.trainer import NLFTTrainer, measure_views

    device = next(model.parameters()).device
    with tempfile.TemporaryDirectory() as out:
        args = NLFTConfig(output_dir=out, report_to=[], use_cpu=device.type == "cpu")
        trainer = NLFTTrainer(model, args=args, train_dataset=records, processing_class=tokenizer)
        data = trainer.train_dataset
        classes, scales, p_bases, masks = [], [], [], []
        model.eval()
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                batch = trainer.data_collator([data[i] for i in range(start, min(len(data), start + batch_size))])
                batch = {k: v.to(device) for k, v in batch.items()}
                mask = batch["labels"] != IGNORE_INDEX
                correct = batch["correct"].to(torch.bool)
                p_std, p_judge = measure_views(model, batch, packed=args.padding_free)
                logps, hidden = view_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                           return_hidden=args.phrase_rule == "cosine",
                                           prefix_ids=batch.get("prefix_ids"), packed=args.padding_free)[:2]
                spans = (cosine_spans(hidden.float(), mask, threshold=args.phrase_threshold,
                                      max_span=args.max_phrase_span)
                         if args.phrase_rule == "cosine" else word_spans(batch["word_ids"])
                         if args.phrase_rule == "word" else None)
                p_base = logps.exp()
                ts = batch_token_scales(p_base, p_std if p_std is not None else torch.zeros_like(p_base), p_judge,
                                        correct, mask, spans, params=args.scale_params)
                near = spans_to_mask(ts.erroneous, *spans) if spans is not None else torch.zeros_like(mask)
                ok = correct[:, None]
                cls = torch.where(ok, torch.where(ts.saliency, 0, torch.where(ts.sub_saliency, 1, 2)),
                                  torch.where(ts.erroneous, 3, torch.where(near, 4, 5)))
                for i in range(mask.shape[0]):
                    n = int(mask[i].sum())
                    classes.append(cls[i, :n].tolist())
                    scales.append(ts.scales[i, :n].float().tolist())
                    p_bases.append(p_base[i, :n].float().tolist())
                    masks.append(n)
    return {"classes": classes, "scales": scales, "p_base": p_bases, "lengths": masks,
            "phrase_rule": args.phrase_rule}


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Class changes and scale / P_base differences of ``b`` (bfloat16) against ``a`` (float32)."""
    changed, total, counts_a, counts_b, transitions = 0, 0, [0] * 6, [0] * 6, {}
    d_scale, d_p, scale_diffs = 0.0, 0.0, []
    for ca, cb, sa, sb, pa, pb in zip(a["classes"], b["classes"], a["scales"], b["scales"], a["p_base"],
                                      b["p_base"]):
        for x, y, u, v, p, q in zip(ca, cb, sa, sb, pa, pb):
            total += 1
            counts_a[x] += 1
            counts_b[y] += 1
            if x != y:
                changed += 1
                key = f"{CLASSES[x]} -> {CLASSES[y]}"
                transitions[key] = transitions.get(key, 0) + 1
            d_scale = max(d_scale, abs(u - v))
            d_p = max(d_p, abs(p - q))
            scale_diffs.append(abs(u - v))
    return {"tokens": total, "class_changed": changed, "class_changed_share": changed / total,
            "transitions": transitions, "float32_counts": dict(zip(CLASSES, counts_a)),
            "bfloat16_counts": dict(zip(CLASSES, counts_b)), "max_scale_diff": d_scale,
            "mean_scale_diff": sum(scale_diffs) / total, "max_p_base_diff": d_p}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=24, help="records (half correct)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torch
    from workload import realistic_records

    from nlft.utils.models import load_model, load_tokenizer

    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer("smollm2")
    records = realistic_records(tokenizer, args.rows, correct_share=0.5)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model("smollm2").to(device)
    fp32 = measure(model, tokenizer, records, args.batch_size)
    with torch.autocast(device, dtype=torch.bfloat16):  # float32 weights, bfloat16 matmuls: what --bf16 trains with
        autocast = measure(model, tokenizer, records, args.batch_size)
    bf16 = measure(model.to(torch.bfloat16), tokenizer, records, args.batch_size)
    report = {"rows": args.rows, "model": "SmolLM2-135M-Instruct", "device": device, "phrase_rule": fp32["phrase_rule"],
              "bfloat16_weights": compare(fp32, bf16), "bfloat16_autocast": compare(fp32, autocast)}
    from workload import emit

    emit(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
