"""Generate chain-of-thought outputs for questions, with a local model or an OpenAI-compatible server.

Writes ``OUT/outputs.jsonl`` (one row per question and sample, resumable) and ``OUT/args.json``.
A teacher model gives "learning from teaching" data; the model being trained, with ``--adapter``,
gives "self-study" data.
"""

from __future__ import annotations

import argparse

from nlft.commands._data_args import add_backend_arguments, add_sampling_arguments, generation_settings
from nlft.commands._dataset_args import add_dataset_arguments, load_dataset_from_args
from nlft.commands._types import add_output_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nlft generate``."""
    add_dataset_arguments(parser)
    add_backend_arguments(parser)
    add_sampling_arguments(parser)
    add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Generate outputs; print the output file's path."""
    from nlft.data.build import generate

    rows = load_dataset_from_args(args)
    result = generate(rows, args.out, **generation_settings(args, rows))
    print(f"wrote {len(result.rows)} outputs to {result.outputs_file} in {result.seconds} s")
    return 0
