"""``nlft train`` under ``accelerate launch`` on CPU processes, for tests/train/test_accelerate_configs.py.

Usage: accelerate launch --config_file CONFIG ... tests/train/accelerate_cpu.py COUNTS train ARGS...

accelerate turns FSDP on for GPU process types only; on CPU processes (gloo) the same FSDP2 code path
(``fully_shard`` over a device mesh) runs once the accelerator state says FSDP, which is all this script
changes. Each process writes to ``COUNTS.rankN`` how often a shared prefix's keys and values were
continued from with and without grad (the base view and the measurement views), so that a test sees the
shared prefix active in every process.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from nlft.cli import main
from nlft.method.logps import PrefixKV

_init = AcceleratorState.__init__


def _init_fsdp_on_cpu(self: AcceleratorState, *args: object, **kwargs: object) -> None:
    _init(self, *args, **kwargs)
    if self.distributed_type == DistributedType.MULTI_CPU and os.environ.get("ACCELERATE_USE_FSDP") == "true":
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = (kwargs.get("fsdp_plugin") or getattr(self, "fsdp_plugin", None)
                            or FullyShardedDataParallelPlugin())


counts = {"with_grad": 0, "no_grad": 0}
_expand = PrefixKV.expand


def _counting_expand(self: PrefixKV, rows: int) -> object:
    counts["with_grad" if torch.is_grad_enabled() else "no_grad"] += 1
    return _expand(self, rows)


if __name__ == "__main__":
    AcceleratorState.__init__ = _init_fsdp_on_cpu
    PrefixKV.expand = _counting_expand
    out = sys.argv[1]
    code = main(sys.argv[2:])
    Path(f"{out}.rank{os.environ.get('RANK', '0')}").write_text(json.dumps(counts))
    sys.exit(code)
