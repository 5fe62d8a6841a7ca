"""Two CPU processes (gloo, launched by accelerate) give the same step as one process on the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "dist_train.py"


def run(cmd: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    run([sys.executable, str(SCRIPT), str(one), "4"], tmp_path)
    # Without CUDA, accelerate's multi-process launcher runs the processes on the CPU with the gloo backend.
    run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
         str(SCRIPT), str(two), "2"], tmp_path)
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert a["world_size"] == 1 and b["world_size"] == 2
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
    assert a["lora"].keys() == b["lora"].keys()
    for k in a["lora"]:
        assert b["lora"][k] == pytest.approx(a["lora"][k], rel=1e-4, abs=1e-6), k
    # The step's fast path runs under DDP as in one process: the step's forwards inside the DDP wrapper take the
    # shared prefix's cache, packed rows and logits_to_keep, as many times per process as the one process's do.
    ranks_out = [json.loads((tmp_path / f"two.json.rank{r}").read_text()) for r in (0, 1)]
    assert a["forwards"]["prefix_cache"] > 0 and a["forwards"]["packed"] > 0 and a["forwards"]["logits_to_keep"] > 0
    for rank in ranks_out:
        assert rank["forwards"] == a["forwards"]
    # The NLFT metrics logged by process 0 are the means over both processes' batches, not process 0's own.
    ranks = [r["metrics"] for r in ranks_out]
    assert ranks[0]["nlft/nll"] != pytest.approx(ranks[1]["nlft/nll"])
    for key in ("nlft/nll", "nlft/mean_scale", "nlft/weighted_nll"):
        values = ranks[0][key] + ranks[1][key]
        assert b["logged"][key] == pytest.approx(sum(values) / len(values), rel=1e-6), key
    # a metric that only one process saw (erroneous tokens need an incorrect row) is averaged over that process
    for key in set(ranks[0]) ^ set(ranks[1]):
        only = ranks[0].get(key) or ranks[1][key]
        assert b["logged"][key] == pytest.approx(sum(only) / len(only)), key


def test_gather_metric_means_in_one_process():
    from nlft.train.progress import gather_metric_means

    assert gather_metric_means({"a": [1.0, 2.0, 6.0], "b": [], "c": [0.5]}) == {"a": 3.0, "c": 0.5}
