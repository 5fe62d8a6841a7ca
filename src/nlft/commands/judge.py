"""Grade outputs and write judgments for the incorrect ones (paper appendix A.1).

Reads an outputs file (``nlft generate``'s ``outputs.jsonl``, or any JSONL with ``id``, ``question``,
``reference``, ``output`` and optionally ``gold``, else read from the reference's ``#### N``) and
writes NLFT records to ``OUT/nlft.jsonl`` (resumable).
``--judge calculator`` checks calculator annotations and equations without any model.
"""

from __future__ import annotations

import argparse

from nlft.commands._data_args import (
    add_backend_arguments,
    add_judge_arguments,
    judge_spec,
    print_summary,
    result_arguments,
)
from nlft.commands._types import add_output_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nlft judge``."""
    parser.add_argument("--input", required=True, help="outputs JSONL (from nlft generate)")
    add_output_arguments(parser)
    add_judge_arguments(parser, with_backend_defaults=False)
    add_backend_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=8)


def run(args: argparse.Namespace) -> int:
    """Judge the outputs; print the NLFT file's path and a summary."""
    from nlft.data.build import judge, read_outputs

    rows = read_outputs(args.input)
    spec = judge_spec(args, rows)
    result = judge(rows, args.out, judge=spec, run_args=result_arguments(args), progress=not args.no_progress)
    print_summary(result)
    return 0
