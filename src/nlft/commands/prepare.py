"""Build NLFT training data: dataset -> outputs -> grades -> judgments -> ``OUT/nlft.jsonl``.

Example (offline, no judge model)::

    nlft prepare --dataset gsm8k --data-dir data/gsm8k --split train --limit 50 \
        --judge calculator --out runs/p

Writes ``outputs.jsonl`` (generation), ``nlft.jsonl`` (the trainer's input), ``summary.json`` and
``args.json``. Every stage is resumable: rerun the same command after an interruption.
"""

from __future__ import annotations

import argparse

from nlft.commands._data_args import (
    add_backend_arguments,
    add_dataset_arguments,
    add_judge_arguments,
    add_sampling_arguments,
    backend_spec,
    judge_spec,
    load_dataset_from_args,
    print_summary,
    result_arguments,
    sampling_spec,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nlft prepare``."""
    add_dataset_arguments(parser)
    add_backend_arguments(parser)
    add_sampling_arguments(parser)
    add_judge_arguments(parser, with_backend_defaults=True)
    parser.add_argument("--out", required=True, help="output directory (rerun the same command to resume)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the whole data pipeline; print the NLFT file's path and a summary."""
    from nlft.data.build import TemplateSpec, prepare

    template = TemplateSpec.from_file(args.template)
    backend, sampling, judge = backend_spec(args), sampling_spec(args), judge_spec(args)
    result = prepare(load_dataset_from_args(args), args.out, backend=backend, sampling=sampling, template=template,
                     judge=judge, run_args=result_arguments(args), progress=not args.no_progress)
    print_summary(result)
    return 0
