"""Write a self-contained HTML saliency map of NLFT records.

Every output token is coloured by its NLFT scale and class (saliency, sub-saliency, irrelevant for
correct outputs; erroneous, near-error, irrelevant for incorrect ones), next to CUT's selection of
the same output. Hovering a token shows its probability under each view. Sliders for p0_correct,
c1..c3, r0, p0_incorrect and the CUT threshold recolour the tokens in the browser without running
the model again. The page opens from disk: no server, no network.
"""

from __future__ import annotations

import argparse

from nlft.commands._types import at_least_one


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
    from dataclasses import fields

    from nlft.method.params import ScaleParams

    settings = {f.name: f for f in fields(ScaleParams)}
    group = parser.add_argument_group("starting values of the page's controls (the page can change them)")
    for name in ("p0_correct", "c1", "c2", "c3", "r0", "p0_incorrect", "cut_threshold"):
        f = settings[name]
        group.add_argument("--" + name.replace("_", "-"), type=float, default=None,
                           help=f"{f.metadata['help']} (default {f.default})")
    group.add_argument("--irrelevant", choices=("zero", "reference"), default=None,
                       help=f"scale of irrelevant tokens of incorrect outputs (default "
                            f"{settings['irrelevant_incorrect'].default})")
    group.add_argument("--phrase-rule", choices=("cosine", "word", "none"), default=None,
                       help=f"phrase rule shown first (default {settings['phrase_rule'].default}); both are stored")
    for name, kind in (("phrase_threshold", float), ("max_phrase_span", int)):
        f = settings[name]
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                            help=f"{f.metadata['help']} (default {f.default}; fixed in the page)")


def run(args: argparse.Namespace) -> int:
    """Measure the records with the model and write the page (:func:`nlft.report.saliency.saliency_file`)."""
    from nlft.report.saliency import saliency_file

    out, n = saliency_file(
        args.data, args.out, model=args.model, adapter=args.adapter, limit=args.limit, batch_size=args.batch_size,
        dtype=args.dtype, phrase_threshold=args.phrase_threshold, max_phrase_span=args.max_phrase_span,
        p0_correct=args.p0_correct, c1=args.c1, c2=args.c2, c3=args.c3, r0=args.r0, p0_incorrect=args.p0_incorrect,
        cut_threshold=args.cut_threshold, irrelevant_incorrect=args.irrelevant, phrase_rule=args.phrase_rule)
    print(f"saliency map of {n} records: {out}")
    return 0
