"""Compare run directories: a table of final loss, accuracy, wall time and peak memory, and one PNG.

The table shows the strict accuracy (the ``#### answer`` line only) and the flexible one (the phrasings
models write instead), each with its 95% interval (``ci95_strict``, or the single ``ci95`` of older
files; ``ci95_flexible``), how each run's training outputs were graded ("data graded": strict or
flexible), whether the drift monitor fired or stopped the run, and which epoch was kept (``--keep
best`` or the last). Reads each run's ``manifest.json``, ``metrics.json``, ``log_history.jsonl`` and
``eval_history.jsonl``; missing pieces show as "-". The PNG overlays the training loss and the
accuracy per epoch of every run (e.g. NLFT against SFT and CUT on the same outputs).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``nlft compare``."""
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    parser.add_argument("--out", default="compare.png", help="PNG to write (default: compare.png)")
    parser.add_argument("--labels", nargs="+", default=None, help="legend label of each run, in order")
    parser.add_argument("--json", default=None, help="also write the table as JSON to this file")


def run(args: argparse.Namespace) -> int:
    """Print the table and write the PNG. Returns the exit code."""
    from pathlib import Path

    from nlft.report.plots import format_table, plot_compare, summarize_run
    from nlft.utils.files import DataError, atomic_write_json

    runs = [Path(r) for r in args.runs]
    for r in runs:
        if not r.is_dir():
            raise DataError("not a run directory", path=r)
    if args.labels is not None and len(args.labels) != len(runs):
        raise DataError(f"--labels has {len(args.labels)} names for {len(runs)} runs")
    rows = [summarize_run(r) for r in runs]
    print(format_table(rows))
    if args.json:
        atomic_write_json(args.json, rows)
    out = plot_compare(runs, args.out, args.labels)
    print(f"plot: {out}" if out else "plot: nothing to draw (no loss or accuracy in these runs)")
    return 0
