"""Run the small-data study (``docs/study.md``): NLFT against SFT, DFT and SDFT on a main task and a panel of tasks.

Every cell is cached in the study directory: rerun the same command to finish an interrupted study; run
it in a second process to share the work (each process claims the cells it runs); ``--only`` runs
some cells (every word must name the cell: an arm, a task, ``n50``, ``s1``, a cell name);
``--report`` rewrites the tables from the cells done so far, or from a folder holding only the committed
``cells.jsonl`` and ``predictions.jsonl.gz``. ``--select`` runs the preset selection: every candidate
NLFT setting on every task, scored on validation questions only.

Examples::

    nlft study --out study --select                  # choose the default NLFT preset on validation questions
    nlft study --out study                           # the tables (SmolLM2-135M, CPU)
    nlft study --out study --only nlft_robust n50 s0 # the cells of one arm, size and seed
    nlft study --out docs/study --report             # the published tables from the committed files
    nlft study --out study --data-from docs/study    # train on the committed questions and records
    nlft study --out study-8b --model meta-llama/Meta-Llama-3-8B-Instruct --lr 5e-5
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
    from nlft.study.config import ARMS, CANDIDATES, StudyConfig

    d = StudyConfig()
    parser.add_argument("--out", required=True, help="study directory (rerun the same command to resume)")
    parser.add_argument("--model", default=d.model, help=f"model name or path (default {d.model})")
    parser.add_argument("--main-task", default=d.main_task, help=f"the main table's task (default {d.main_task})")
    parser.add_argument("--panel", type=_names, default=d.panel,
                        help=f"the panel's tasks, comma-separated (default {','.join(d.panel)})")
    parser.add_argument("--sizes", type=_ints, default=d.sizes, help="training-set sizes of the main task "
                                                                     f"(default {','.join(map(str, d.sizes))})")
    parser.add_argument("--panel-size", type=int, default=d.panel_size, help=f"N of the panel (default {d.panel_size})")
    parser.add_argument("--seeds", type=_ints, default=d.seeds, help="seeds: each draws its own training data")
    parser.add_argument("--arms", type=_names, default=d.arms, help=f"arms of the main task ({', '.join(ARMS)})")
    parser.add_argument("--panel-arms", type=_names, default=d.panel_arms, help="arms of the panel tasks")
    parser.add_argument("--pool-size", type=int, default=d.pool_size, help="training questions per task, drawn from")
    parser.add_argument("--eval-size", type=int, default=d.eval_size, help="held-out questions per task")
    parser.add_argument("--val-size", type=int, default=d.val_size, help="validation questions per task")
    parser.add_argument("--epochs", type=float, default=d.epochs,
                        help="the budget: NLFT's optimiser steps over this many epochs, for every arm")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"learning rate, every arm (default {d.lr:g})")
    parser.add_argument("--eval-points", type=int, default=d.eval_points,
                        help="validation evaluations along each training (the best is kept)")
    parser.add_argument("--select", action="store_true", help="run the preset selection (validation questions only)")
    parser.add_argument("--candidates", type=_names, default=d.candidates,
                        help=f"candidates of --select ({', '.join(CANDIDATES)})")
    parser.add_argument("--select-seeds", type=_ints, default=d.select_seeds,
                        help=f"seeds of --select (default {','.join(map(str, d.select_seeds))})")
    parser.add_argument("--only", nargs="+", default=None, help="run only the cells every one of these words names")
    parser.add_argument("--data-from", default=None, metavar="DIR",
                        help="run DIR's study (e.g. docs/study): its protocol (study.json; the protocol options are "
                             "then not read) and each task's questions and pool records from DIR/task-data/ instead "
                             "of generating them, so that the cells train on the committed records")
    parser.add_argument("--report", action="store_true", help="only rewrite the tables, selection and plot")


def run(args: argparse.Namespace) -> int:
    """Run the study (or what is missing of it), then write and print the tables."""
    import json
    from dataclasses import fields
    from pathlib import Path

    from nlft.study import StudyConfig, run_study, write_report
    from nlft.study.report import markdown, selection_markdown

    out = Path(args.out)
    # --report: the protocol the cells were run with; --data-from: the one the committed data was made with
    stored = Path(args.data_from) / "study.json" if args.data_from and not args.report else out / "study.json"
    if (args.report or args.data_from) and stored.exists():
        # the protocol the cells were run with; the selection's candidates and seeds are the options' (they add
        # cells to a study and change none, so study.json does not hold them)
        protocol = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(stored.read_text()).items()}
        cfg = StudyConfig(**{**protocol, "candidates": args.candidates, "select_seeds": args.select_seeds})
    else:
        cfg = StudyConfig(**{f.name: getattr(args, f.name) for f in fields(StudyConfig) if hasattr(args, f.name)})
    if not args.report:
        run_study(out, cfg, only=args.only, select=args.select, data_from=args.data_from)
    table = write_report(out, cfg)
    print(markdown(table))
    if (out / "selection.json").exists():
        print(selection_markdown(json.loads((out / "selection.json").read_text())))
    print(f"tables: {out / 'table.md'}, {out / 'paired.md'}")
    return 0
