"""Generate chain-of-thought outputs for questions, with a local model or an OpenAI-compatible server.

Writes ``OUT/outputs.jsonl`` (one row per question and sample, resumable) and ``OUT/args.json``.
A teacher model gives "learning from teaching" data; the model being trained, with ``--adapter``,
gives "self-study" data.
"""

from __future__ import annotations

import argparse

from nlft.commands._data_args import (
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
    from nlft.data.build import TemplateSpec, generate

    template = TemplateSpec.from_file(args.template)
    backend, sampling = backend_spec(args), sampling_spec(args)
    result = generate(load_dataset_from_args(args), args.out, backend=backend, sampling=sampling, template=template,
                      run_args=result_arguments(args), progress=not args.no_progress)
    print(f"wrote {len(result.rows)} outputs to {result.outputs_file} in {result.seconds} s")
    return 0
