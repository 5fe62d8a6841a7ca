"""Run the small-data study (``docs/study.md``): base, SFT, DFT, CUT and NLFT (paper, robust) over sizes and seeds.

Every cell is cached in the study directory: rerun the same command to finish an interrupted
study, ``--only`` to run some cells (a cell name such as ``nlft-n50-s0``, a method, ``n100``, a
seed ``s1``, a part, ``table`` or ``curve``), ``--report`` to rewrite the tables and plots from
the cells done so far. A cell is rerun by deleting its folder under ``<out>/<part>/cells/``.

Examples::

    nlft study --out study                           # the whole CPU study (SmolLM2-135M, chain_sum)
    nlft study --out study --sweep                   # choose the robust preset on the validation questions
    nlft study --out study --only nlft-n50-s0        # one cell
    nlft study --out study --import-cells docs/study/cells.jsonl   # continue a study begun elsewhere
    nlft study --out study-8b --model meta-llama/Meta-Llama-3-8B-Instruct --no-gsm8k
"""

from __future__ import annotations

import argparse


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``nlft study`` (defaults: the protocol of docs/study.md)."""
    from nlft.study import StudyConfig

    d = StudyConfig()
    parser.add_argument("--out", required=True, help="study directory (rerun the same command to resume)")
    parser.add_argument("--model", default=d.model, help=f"model name or path (default {d.model})")
    parser.add_argument("--task", default=d.task, help=f"question set of the main table (default {d.task})")
    parser.add_argument("--data-dir", default=None, help="GSM8K folder (default: $NLFT_GSM8K_DIR)")
    parser.add_argument("--sizes", type=_ints, default=d.sizes, help="training-set sizes (default 50,100,200)")
    parser.add_argument("--seeds", type=_ints, default=d.seeds, help="training seeds (default 0,1,2)")
    parser.add_argument("--methods", type=_names, default=d.methods,
                        help="sft_gold, sft_outputs, dft, cut, nlft, nlft_robust (default: all)")
    parser.add_argument("--prompt", default=d.prompt,
                        help=f"prompt of generation, training and evaluation: brief, base (short) or solve (A.2, "
                             f"five worked examples) (default {d.prompt})")
    parser.add_argument("--epochs", type=float, default=d.epochs,
                        help=f"epochs of each table cell (default {d.epochs:g})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"learning rate, every method (default {d.lr:g})")
    parser.add_argument("--eval-size", type=int, default=d.eval_size, help="held-out questions (default 300)")
    parser.add_argument("--val-size", type=int, default=d.val_size,
                        help=f"validation questions, apart from the held-out ones (default {d.val_size})")
    parser.add_argument("--sweep-size", type=int, default=d.sweep_size, help="N of the --sweep runs")
    parser.add_argument("--eval-max-new-tokens", type=int, default=d.eval_max_new_tokens)
    parser.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size)
    parser.add_argument("--gen-max-new-tokens", type=int, default=d.gen_max_new_tokens,
                        help="new tokens per training output of the main task")
    parser.add_argument("--curve-size", type=int, default=d.curve_size, help="N of the per-epoch curves")
    parser.add_argument("--curve-epochs", type=int, default=d.curve_epochs)
    parser.add_argument("--curve-seeds", type=_ints, default=d.curve_seeds)
    parser.add_argument("--curve-eval-size", type=int, default=d.curve_eval_size,
                        help="the per-epoch curves are evaluated on the first this many held-out questions")
    parser.add_argument("--gsm8k", action="store_true", help="add the GSM8K part")
    parser.add_argument("--no-gsm8k", action="store_true", help=argparse.SUPPRESS)  # the default since 0.2
    parser.add_argument("--gsm8k-size", type=int, default=d.gsm8k_size)
    parser.add_argument("--gsm8k-eval-size", type=int, default=d.gsm8k_eval_size)
    parser.add_argument("--only", nargs="+", default=None,
                        help="run only the cells matching one of these: a cell name (nlft-n50-s0), a method, a "
                             "size (n50), a seed (s1), a part (main, gsm8k), 'table' or 'curve'")
    parser.add_argument("--skip-part", nargs="+", default=(), help="parts not to run now (main, gsm8k)")
    parser.add_argument("--report", action="store_true", help="only rewrite table.md, table.json and the plots")
    parser.add_argument("--sweep", action="store_true",
                        help="train the robust preset's candidate settings and rank them on the validation questions")
    parser.add_argument("--import-cells", default=None, metavar="FILE",
                        help="first restore the finished cells of this protocol from a cells.jsonl")


def run(args: argparse.Namespace) -> int:
    """Run the study (or what is missing of it) and print the table."""
    from dataclasses import fields
    from pathlib import Path

    from nlft.study import StudyConfig, check_protocol, import_cells, parts, run_study, run_sweep, write_report

    # every protocol field that has a flag (the others keep StudyConfig's defaults)
    cfg = StudyConfig(**{f.name: getattr(args, f.name) for f in fields(StudyConfig)
                         if f.name != "gsm8k" and hasattr(args, f.name)}, gsm8k=args.gsm8k and not args.no_gsm8k)
    out = Path(args.out)
    if args.import_cells:
        check_protocol(out, cfg)
        print(f"nlft study: {import_cells(out, cfg, args.import_cells)} cells restored from {args.import_cells}")
    if args.sweep:
        import json

        from nlft.study import build_data

        check_protocol(out, cfg)
        main = parts(cfg)[0]
        if cfg.sweep_size not in main.sizes:
            main.sizes = tuple(sorted({*main.sizes, cfg.sweep_size}))
        build_data(out, cfg, main)
        print(json.dumps(run_sweep(out, cfg, main, only=args.only), indent=1))
        return 0
    if args.report:
        check_protocol(out, cfg)
        write_report(out, cfg)
    else:
        run_study(out, cfg, only=args.only, skip_parts=tuple(args.skip_part))
    import json

    from nlft.study import markdown

    print(markdown(json.loads((out / "table.json").read_text())))
    print(f"table: {out / 'table.md'}; plots: {out / 'plot_sizes.png'}, {out / 'plot_epochs.png'}")
    return 0
