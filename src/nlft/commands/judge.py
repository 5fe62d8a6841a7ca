"""Grade outputs and write judgments for the incorrect ones (paper appendix A.1).

Reads an outputs file (``nlft generate``'s ``outputs.jsonl``, or any JSONL with ``id``, ``question``,
``reference``, ``output`` and optionally ``gold``, else read from the reference's ``#### N``) and
writes NLFT records to ``OUT/nlft.jsonl`` (resumable).
``--judge calculator`` checks calculator annotations and equations without any model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nlft.commands._data_args import (
    Timer,
    add_backend_arguments,
    add_judge_arguments,
    judge_spec,
    result_arguments,
    write_summary,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nlft judge``."""
    parser.add_argument("--input", required=True, help="outputs JSONL (from nlft generate)")
    parser.add_argument("--out", required=True, help="output directory (rerun the same command to resume)")
    add_judge_arguments(parser, with_backend_defaults=False)
    add_backend_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Judge the outputs; print the NLFT file's path and a summary."""
    from nlft.data.generation import APIError
    from nlft.data.prepare import NLFT_FILE, judge_outputs
    from nlft.tasks.grading import gold_answer
    from nlft.utils.files import DataError, iter_jsonl, lock_dir
    from nlft.utils.resume import check_run_args

    timer = Timer()
    out_dir = Path(args.out)
    judge = judge_spec(args)
    if not Path(args.input).is_file():
        raise DataError("input file not found (--input)", path=args.input)
    rows = []
    for line, row in iter_jsonl(args.input):
        if "gold" not in row and isinstance(row.get("reference"), str):
            try:
                row["gold"] = gold_answer(row["reference"])
            except ValueError:
                raise DataError("no gold answer, and the reference does not end in '#### <number>'",
                                path=args.input, line=line, field="reference") from None
        for name in ("id", "question", "reference", "gold", "output"):
            if not isinstance(row.get(name), str):
                raise DataError("missing or not a string", path=args.input, line=line, field=name)
        rows.append(row)
    lock_dir(out_dir)  # created once the input is read; a second process is refused
    check_run_args(out_dir, result_arguments(args), name="judge_args.json")
    try:
        records = judge_outputs(rows, out_dir / NLFT_FILE, judge=judge, progress=not args.no_progress)
    except APIError as err:
        print(f"nlft judge: error: {err}", file=sys.stderr)
        return 2
    write_summary(records, out_dir, timer)
    return 0
