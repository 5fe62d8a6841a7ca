"""Which tokens NLFT flags, and what the judgment view makes likely: the per-token diagnosis of a data file.

For every record of an NLFT data file (``nlft prepare`` output), with the model at its initial weights (or with
``--adapter``, a trained one), this script measures the three views (:func:`nlft.report.saliency.compute_token_probs`),
classes every response token with :func:`nlft.method.scales.batch_token_scales` under a preset's settings, and
reports, over the incorrect outputs:

- the erroneous tokens by kind (digits, words, punctuation), and how many outputs have their *first* token flagged;
- the mean P_base, P_std and P_judge of the erroneous tokens (r1 = P_judge / P_base is what flags them);
- the incorrect outputs with no erroneous token at all (they add nothing to training under the paper's method),
  and those excluded as entirely wrong (erroneous share over ``max_error_fraction``);
- the share of an output that the erroneous tokens' phrases cover (near-error tokens);
- which way the judgment view moves an incorrect output's first token (on a one-letter answer the model, told by the
  judgment that the letter is wrong, *lowers* it, so no ratio threshold flags it), and the tokens the standard
  answer's view lowers ``r0``-fold (``p_base / p_std > r0``): the error signal the judgment view does not give there;

and over the correct outputs the saliency and sub-saliency shares. With ``--adapter`` the same tokens' P_base under
the trained model is reported beside the initial one (how training moved the flagged tokens and the answers).

    python benchmarks/flagged_tokens.py --data study/basic_arithmetic/data/draws/n50-s0.jsonl --json flags.json
    python benchmarks/flagged_tokens.py --data ... --adapter study/.../run/adapter --preset paper
    python benchmarks/flagged_tokens.py --task choice-of:family_relationships --seed 0 --phrase-rule word

With ``--task`` the records are the study's draw of that task (``--n``, ``--seed``) from its committed data
(``docs/study/task-data``, or ``--study-data``): the same records the study's cells trained on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def kind(piece: str) -> str:
    """``digit``, ``word`` or ``punct`` for one token's text (a token with any digit counts as a digit)."""
    text = piece.strip()
    if any(c.isdigit() for c in text):
        return "digit"
    if any(c.isalpha() for c in text):
        return "word"
    return "punct"


def diagnose(examples: list[dict[str, Any]], params: Any, *, trained: list[dict[str, Any]] | None = None
             ) -> dict[str, Any]:
    """The report of the module docstring from :func:`compute_token_probs` examples, classed with ``params`` (a
    :class:`~nlft.method.params.ScaleParams`); ``trained``: the same records under a trained model, one to one."""
    import torch

    from nlft.method.clustering import spans_to_mask
    from nlft.method.scales import PROB_FLOOR, batch_token_scales

    phrase_rule, max_error_fraction = params.phrase_rule, params.max_error_fraction
    kinds = {"digit": 0, "word": 0, "punct": 0}
    flagged_probs: dict[str, list[float]] = {"p_base": [], "p_std": [], "p_judge": [], "p_base_trained": []}
    first_flagged, no_flag, excluded, near_share, n_wrong = 0, 0, 0, [], 0
    first_tokens: dict[str, int] = {}
    sal_share, sub_share, n_right = [], [], 0
    judge_lowers_first, std_lowered, std_lowered_outputs = 0, 0, 0
    for i, ex in enumerate(examples):
        n = len(ex["tokens"])
        if n == 0:
            continue
        p_base = torch.tensor([ex["p_base"]])
        spans = None if phrase_rule == "none" else tuple(torch.tensor([s]) for s in ex["spans"][phrase_rule])
        p_judge = torch.tensor([ex["p_judge"]]) if ex["p_judge"] is not None else None
        ts = batch_token_scales(p_base, torch.tensor([ex["p_std"]]), p_judge, torch.tensor([bool(ex["correct"])]),
                                torch.ones(1, n, dtype=torch.bool), spans, params=params)
        if ex["correct"]:
            n_right += 1
            sal_share.append(float(ts.saliency.sum()) / n)
            sub_share.append(float(ts.sub_saliency.sum()) / n)
            continue
        n_wrong += 1
        judge_lowers_first += ex["p_judge"] is not None and ex["p_judge"][0] < ex["p_base"][0]
        lowered = sum(1 for b, s in zip(ex["p_base"], ex["p_std"]) if b > params.r0 * max(s, PROB_FLOOR))
        std_lowered += lowered
        std_lowered_outputs += lowered > 0
        err = ts.erroneous[0]
        flags = [t for t in range(n) if err[t]]
        if not flags:
            no_flag += 1
            continue
        if len(flags) / n > max_error_fraction:
            excluded += 1
        if err[0]:
            first_flagged += 1
            first_tokens[ex["tokens"][0].strip()] = first_tokens.get(ex["tokens"][0].strip(), 0) + 1
        near = spans_to_mask(ts.erroneous, *spans)[0] if spans is not None else err
        near_share.append(float(near.sum()) / n)
        for t in flags:
            kinds[kind(ex["tokens"][t])] += 1
            flagged_probs["p_base"].append(ex["p_base"][t])
            flagged_probs["p_std"].append(ex["p_std"][t])
            flagged_probs["p_judge"].append(ex["p_judge"][t])
            if trained is not None:
                flagged_probs["p_base_trained"].append(trained[i]["p_base"][t])
    mean = lambda xs: round(statistics.fmean(xs), 4) if xs else None  # noqa: E731
    return {
        "incorrect_outputs": n_wrong, "correct_outputs": n_right,
        "erroneous_tokens": sum(kinds.values()), "erroneous_by_kind": kinds,
        "incorrect_with_no_flag": no_flag, "excluded_entirely_wrong": excluded,
        "judgment_lowers_first_token": judge_lowers_first, "std_lowered_tokens": std_lowered,
        "incorrect_with_std_lowered_token": std_lowered_outputs,
        "first_token_flagged": first_flagged, "first_tokens_flagged": dict(sorted(first_tokens.items(),
                                                                                  key=lambda kv: -kv[1])[:8]),
        "mean_erroneous_p_base": mean(flagged_probs["p_base"]), "mean_erroneous_p_std": mean(flagged_probs["p_std"]),
        "mean_erroneous_p_judge": mean(flagged_probs["p_judge"]),
        "mean_erroneous_p_base_trained": mean(flagged_probs["p_base_trained"]),
        "mean_near_error_share": mean(near_share),
        "mean_saliency_share": mean(sal_share), "mean_sub_saliency_share": mean(sub_share),
    }


def study_draw(study_data: Path, task: str, n: int, seed: int, root: Path) -> Path:
    """The study's size-``n`` draw of ``seed`` for ``task``, from ``study_data/task-data`` unpacked under ``root``."""
    from nlft.study.data import draw, import_task_data

    if not import_task_data(study_data, root, task):
        raise SystemExit(f"no committed data for {task!r} in {study_data / 'task-data'}")
    return draw(root, task, n, seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="NLFT records (JSONL)")
    source.add_argument("--task", help="a study task: its draw from the committed task data")
    parser.add_argument("--study-data", default=str(REPO / "docs" / "study"), help="the folder holding task-data/")
    parser.add_argument("--n", type=int, default=50, help="the draw's size (with --task)")
    parser.add_argument("--seed", type=int, default=0, help="the draw's seed (with --task)")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--adapter", default=None, help="a trained adapter (P_base after training)")
    parser.add_argument("--preset", default="paper", help="the NLFT preset whose settings class the tokens")
    parser.add_argument("--phrase-rule", default=None, choices=("cosine", "word", "none"),
                        help="override the preset's phrase rule")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the report here too")
    args = parser.parse_args(argv)

    import torch

    from nlft.report.saliency import compute_token_probs
    from nlft.train.config import PRESETS, NLFTConfig
    from nlft.utils.files import read_jsonl
    from nlft.utils.models import load_model, load_tokenizer

    torch.manual_seed(0)
    if args.task:
        with tempfile.TemporaryDirectory(prefix="nlft-flagged-") as tmp:
            records = list(read_jsonl(study_draw(Path(args.study_data), args.task, args.n, args.seed, Path(tmp))))
        args.data = f"{args.task} n{args.n}-s{args.seed} ({args.study_data})"
    else:
        records = list(read_jsonl(args.data))
    records = records[: args.limit]
    overrides = {"phrase_rule": args.phrase_rule} if args.phrase_rule else {}
    config = NLFTConfig(output_dir="/tmp/nlft-flagged-tokens", report_to=[], **{**PRESETS[args.preset], **overrides})
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model)
    examples = compute_token_probs(model, tokenizer, records, config=config, source=args.data, progress=False)
    trained = None
    if args.adapter:
        trained = compute_token_probs(load_model(args.model, adapter=args.adapter), tokenizer, records, config=config,
                                      source=args.data, progress=False)
    report = {"data": args.data, "model": args.model, "adapter": args.adapter, "preset": args.preset,
              "phrase_rule": config.phrase_rule, **diagnose(examples, config.scale_params, trained=trained)}
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
