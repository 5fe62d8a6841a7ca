"""Build NLFT training data: dataset -> outputs -> grades -> judgments -> ``OUT/nlft.jsonl``.

Example (offline, no judge model)::

    nlft prepare --dataset gsm8k --data-dir data/gsm8k --split train --limit 50 \
        --judge calculator --out runs/p

Writes ``outputs.jsonl`` (generation), ``nlft.jsonl`` (the trainer's input), ``summary.json`` and
``args.json``. Every stage is resumable: rerun the same command after an interruption.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nlft.commands._data_args import (
    Timer,
    add_backend_arguments,
    add_dataset_arguments,
    add_judge_arguments,
    add_sampling_arguments,
    backend_spec,
    judge_spec,
    load_dataset_from_args,
    result_arguments,
    sampling_spec,
    write_summary,
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
    from nlft.data.generation import APIError
    from nlft.data.prepare import (
        NLFT_FILE,
        OUTPUTS_FILE,
        TemplateSpec,
        generate_outputs,
        judge_outputs,
    )
    from nlft.utils.files import lock_dir
    from nlft.utils.resume import check_run_args

    timer = Timer()
    out_dir = Path(args.out)
    template = TemplateSpec.from_file(args.template)
    backend, sampling, judge = backend_spec(args), sampling_spec(args), judge_spec(args)
    questions = load_dataset_from_args(args)
    lock_dir(out_dir)  # created once the inputs are read; a second process is refused
    check_run_args(out_dir, result_arguments(args, template_sha256=template.sha256))
    progress = not args.no_progress
    try:
        outputs = generate_outputs(questions, out_dir / OUTPUTS_FILE, backend=backend, sampling=sampling,
                                   template=template, progress=progress)
        records = judge_outputs(outputs, out_dir / NLFT_FILE, judge=judge, progress=progress)
    except APIError as err:
        print(f"nlft prepare: error: {err}", file=sys.stderr)
        return 2
    write_summary(records, out_dir, timer)
    return 0
