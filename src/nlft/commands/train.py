"""Train with NLFT or a baseline (SFT, DFT, CUT, ReFT, SDFT) on an NLFT data file, into a run directory.

All methods read the same data file, train under the prompt its outputs were generated with (their
provenance; ``--base-template FILE`` sets another), and share the LoRA and optimiser settings (the paper's: LoRA
r 16, alpha 16, dropout 0.05 on the MLP projections; AdamW, cosine schedule, lr 5e-5, batch 4).
Options come from ``--config FILE.yaml`` and the command line (the command line wins); the run
directory gets ``config.yaml`` (the resolved options, reusable with ``--config``), ``manifest.json``
(versions, seed, machine, per-epoch wall time and peak memory), ``log_history.jsonl``, checkpoints
and the final adapter (or model with ``--full``).

Examples::

    nlft train --method nlft --data data/nlft.jsonl --out runs/nlft
    nlft train --method nlft --preset robust --data data/nlft.jsonl --out runs/nlft-robust
    nlft train --method sft --sft-data outputs --data data/nlft.jsonl --out runs/sft --eval-each-epoch --eval-limit 50
    nlft train --config configs/cpu-quickstart.yaml --method reft --out runs/reft
    nlft train --method sdft --data data/nlft.jsonl --out runs/sdft --sdft-max-new-tokens 64
    nlft train --config configs/cpu-quickstart.yaml --out runs/nlft --resume
    nlft train --method nlft --data data/nlft.jsonl --out runs/nlft --eval-each-epoch --eval-data chain_sum \
        --eval-split validation --keep best --drift-action stop
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field of :data:`nlft.train.options.TrainOptions` (``lora_r`` -> ``--lora-r``), and ``--config``."""
    from nlft.train.options import TrainOptions, field_types, parse_bool

    parser.add_argument("--config", default=None, help="YAML file of options (flags given here override it)")
    types_ = field_types()
    for f in fields(TrainOptions):
        help_text = f.metadata.get("help", "")
        base, optional = types_[f.name]
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        if base is bool and not optional:
            kwargs["action"] = "store_true"
            help_text += " (flag)"
        else:
            kwargs["type"] = {bool: parse_bool, int: int, float: float}.get(base, str)
            kwargs["metavar"] = f.name.upper()
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
            default = f.default if f.default is not MISSING else None
            help_text += f" (default: {default})"
        parser.add_argument("--" + f.name.replace("_", "-"), help=help_text, **kwargs)


def resolve_options(args: argparse.Namespace) -> Any:
    """Defaults < ``--config`` YAML < the flags given (:func:`nlft.train.options.options_from`)."""
    from nlft.train.options import TrainOptions, options_from

    names = {f.name for f in fields(TrainOptions)}
    return options_from(getattr(args, "config", None), {k: v for k, v in vars(args).items() if k in names})


def run(args: argparse.Namespace) -> int:
    """Train; plot the run; say where the weights are."""
    import sys

    from nlft.report.plots import try_plot_run
    from nlft.train.recipe import end_processes, run_training

    result = run_training(resolve_options(args))
    end_processes()
    if not result.trained or not result.main_process:
        return 0
    paths, error = try_plot_run(result.run_dir)
    if paths:
        print(f"nlft train: plots {', '.join(str(p) for p in paths)}", file=sys.stderr)
    if error is not None:
        print(f"nlft train: plotting failed: {error}", file=sys.stderr)
    print(f"nlft train: {result.method} done -> {result.run_dir} (weights and model card: {result.weights})",
          file=sys.stderr)
    return 0
