"""Build NLFT training data: dataset -> outputs -> grades -> judgments -> ``OUT/nlft.jsonl``.

Example (offline, no judge model)::

    nlft prepare --dataset gsm8k --data-dir data/gsm8k --split train --limit 50 \
        --judge calculator --out runs/p

Writes ``outputs.jsonl`` (generation), ``nlft.jsonl`` (the trainer's input), ``summary.json`` and
``args.json`` (and ``split.json``, the ids of each part, for a file split by ``--split-fractions``).
Every stage is resumable: rerun the same command after an interruption.
"""

from __future__ import annotations

import argparse

from nlft.commands._data_args import (
    add_backend_arguments,
    add_judge_arguments,
    add_sampling_arguments,
    generation_settings,
    judge_spec,
    print_summary,
)
from nlft.commands._dataset_args import add_dataset_arguments, load_dataset_from_args, record_split
from nlft.commands._types import add_output_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nlft prepare``."""
    add_dataset_arguments(parser)
    add_backend_arguments(parser)
    add_sampling_arguments(parser)
    add_judge_arguments(parser, with_backend_defaults=True)
    add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run the whole data pipeline; print the NLFT file's path and a summary."""
    from nlft.data.build import prepare

    rows = load_dataset_from_args(args)
    judge = judge_spec(args, rows)  # first: it names the rule judge in args.json
    print_summary(prepare(rows, args.out, judge=judge, **generation_settings(args, rows)))
    if args.split_fractions:
        record_split(args, args.out)
    return 0
