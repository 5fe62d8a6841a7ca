"""Generate chain-of-thought outputs for questions, with a local model or an OpenAI-compatible server.

Writes ``OUT/outputs.jsonl`` (one row per question and sample, resumable) and ``OUT/args.json``.
A teacher model gives "learning from teaching" data; the model being trained, with ``--adapter``,
gives "self-study" data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nlft.commands._data_args import (
    Timer,
    add_backend_arguments,
    add_dataset_arguments,
    add_sampling_arguments,
    backend_spec,
    load_dataset_from_args,
    result_arguments,
    sampling_spec,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nlft generate``."""
    add_dataset_arguments(parser)
    add_backend_arguments(parser)
    add_sampling_arguments(parser)
    parser.add_argument("--out", required=True, help="output directory (rerun the same command to resume)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Generate outputs; print the output file's path."""
    from nlft.data.generation import APIError
    from nlft.data.prepare import OUTPUTS_FILE, TemplateSpec, generate_outputs
    from nlft.utils.files import lock_dir
    from nlft.utils.resume import check_run_args

    timer = Timer()
    out_dir = Path(args.out)
    template = TemplateSpec.from_file(args.template)
    backend, sampling = backend_spec(args), sampling_spec(args)
    questions = load_dataset_from_args(args)
    lock_dir(out_dir)  # created once the inputs are read; a second process is refused
    check_run_args(out_dir, result_arguments(args, template_sha256=template.sha256))
    try:
        rows = generate_outputs(questions, out_dir / OUTPUTS_FILE, backend=backend, sampling=sampling,
                                template=template, progress=not args.no_progress)
    except APIError as err:
        print(f"nlft generate: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(rows)} outputs to {out_dir / OUTPUTS_FILE} in {timer.elapsed()} s")
    return 0
