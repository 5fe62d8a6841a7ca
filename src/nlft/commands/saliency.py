"""Write a self-contained HTML saliency map of NLFT records.

Every output token is coloured by its NLFT scale and class (saliency, sub-saliency, irrelevant for
correct outputs; erroneous, near-error, irrelevant for incorrect ones), next to CUT's selection of
the same output. Hovering a token shows its probability under each view. Sliders for p0_correct,
c1..c3, r0, p0_incorrect and the CUT threshold recolour the tokens in the browser without running
the model again. The page opens from disk: no server, no network.
"""

from __future__ import annotations

import argparse

from nlft.commands._data_args import at_least_one


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``nlft saliency``."""
    parser.add_argument("--data", required=True, help="NLFT jsonl (question, reference, output, correct, judgment)")
    parser.add_argument("--model", default="smollm2", help="model name or path (default: smollm2, offline)")
    parser.add_argument("--adapter", default=None, help="PEFT adapter folder applied on top of the model")
    parser.add_argument("--out", default="saliency.html", help="HTML file to write (default: saliency.html)")
    parser.add_argument("--limit", type=at_least_one, default=None, help="only the first N records")
    parser.add_argument("--batch-size", type=int, default=4, help="records per forward pass (default: 4)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="prompt + output token limit; longer outputs are cut (default: 4096)")
    parser.add_argument("--dtype", default=None, help="float32 (default on CPU), bfloat16, float16 or auto")
    group = parser.add_argument_group("starting values of the page's controls (the page can change them)")
    for flag, kind, help_text in (
        ("--p0-correct", float, "saliency threshold on P_std (default 0.95)"),
        ("--c1", float, "saliency exponent (default 5)"),
        ("--c2", float, "sub-saliency exponent (default 0.3)"),
        ("--c3", float, "irrelevant exponent (default 0.6)"),
        ("--r0", float, "ratio threshold of erroneous tokens (default 1.5)"),
        ("--p0-incorrect", float, "minimum P_judge of an erroneous token (default 0.01)"),
        ("--cut-threshold", float, "CUT: P_judge / P_base threshold (default 1.1)"),
    ):
        group.add_argument(flag, type=kind, default=None, help=help_text)
    group.add_argument("--irrelevant", choices=("zero", "reference"), default=None,
                       help="scale of irrelevant tokens of incorrect outputs (default zero)")
    group.add_argument("--phrase-rule", choices=("cosine", "word", "none"), default=None,
                       help="phrase rule shown first (default cosine); both are stored")
    parser.add_argument("--phrase-threshold", type=float, default=None,
                        help="cosine similarity threshold of phrase tokens (default 0.6; fixed in the page)")
    parser.add_argument("--max-phrase-span", type=int, default=None,
                        help="most tokens a phrase reaches on each side (default 8; fixed in the page)")


def run(args: argparse.Namespace) -> int:
    """Measure the records with the model and write the page. Returns the exit code."""
    from pathlib import Path

    from nlft.utils.files import DataError, read_jsonl

    data = Path(args.data)
    if not data.exists():
        raise DataError("file not found", path=data)
    records = read_jsonl(data)
    if args.limit is not None:
        records = records[: args.limit]
    if not records:
        raise DataError("no records", path=data)

    from nlft.report.saliency import saliency_map
    from nlft.train.config import NLFTConfig
    from nlft.utils.models import load_model, load_tokenizer

    overrides = {k: v for k, v in {"phrase_threshold": args.phrase_threshold,
                                   "max_phrase_span": args.max_phrase_span}.items() if v is not None}
    config = NLFTConfig(output_dir=str(Path(args.out).parent / "nlft-output"), report_to=[], **overrides)
    if args.adapter and not Path(args.adapter).is_dir():
        raise DataError("adapter folder not found (--adapter)", path=args.adapter)
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, dtype=args.dtype, adapter=args.adapter)
    meta = {"model": args.model, "adapter": args.adapter, "data": str(data)}
    out = saliency_map(
        model, tokenizer, records, args.out, config=config, batch_size=args.batch_size, source=str(data), meta=meta,
        p0_correct=args.p0_correct, c1=args.c1, c2=args.c2, c3=args.c3, r0=args.r0, p0_incorrect=args.p0_incorrect,
        cut_threshold=args.cut_threshold, irrelevant_incorrect=args.irrelevant, phrase_rule=args.phrase_rule,
    )
    print(f"saliency map of {len(records)} records: {out}")
    return 0
