"""The accelerate configs of configs/accelerate/ that run on CPU processes: `nlft train` under each equals one process.

Two processes with one row each take the same steps as one process with both rows: the same losses and
LoRA weights, with the shared prefix continued from by the base view (with grad) and the measurement
views (without) in every process. DeepSpeed does not run on CPU here: its configs are only parsed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "accelerate"
SCRIPT = Path(__file__).resolve().parent / "accelerate_cpu.py"
# Two steps of NLFT with LoRA (no dropout: each process would draw its own); r0 1 and p0_incorrect 0 give the
# tiny random model's tokens non-zero scales.
TRAIN = ["--method", "nlft", "--max-steps", "2", "--lora-dropout", "0", "--lr", "0.01", "--no-progress",
         "--drift-action", "off", "--r0", "1.0", "--p0-incorrect", "0.0"]


def _train(tmp_path: Path, name: str, launch: list[str], batch_size: int, model: Path, data: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    counts = tmp_path / f"{name}.counts"
    cmd = [*launch, str(SCRIPT), str(counts), "train", *TRAIN, "--model", str(model), "--data", str(data),
           "--out", str(tmp_path / name), "--batch-size", str(batch_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    from safetensors.torch import load_file

    run = tmp_path / name
    return {"logs": [json.loads(line) for line in (run / "log_history.jsonl").read_text().splitlines()],
            "lora": load_file(run / "adapter" / "adapter_model.safetensors"),
            "counts": [json.loads(p.read_text()) for p in sorted(tmp_path.glob(f"{name}.counts.rank*"))],
            "stderr": proc.stderr}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_dir, data_file):
    tmp = tmp_path_factory.mktemp("one")
    return tmp, _train(tmp, "one", [sys.executable], 2, tiny_dir, data_file)


@pytest.mark.slow
@pytest.mark.parametrize("config, processes", [("fsdp2.yaml", 2), ("multi_gpu.yaml", 2), ("single_gpu.yaml", 1)])
def test_config_equals_one_process(one_process, tmp_path, tiny_dir, data_file, config, processes):
    _, one = one_process
    # Without CUDA the processes run on the CPU with the gloo backend; bf16 mixed precision is a GPU setting.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config),
              "--num_processes", str(processes), "--mixed_precision", "no", "--main_process_port", "29537"]
    got = _train(tmp_path, "run", launch, 2 // processes, tiny_dir, data_file)
    losses = [e["loss"] for e in one["logs"] if "loss" in e]
    assert len(losses) == 2 and losses[-1] > 0
    assert [e["loss"] for e in got["logs"] if "loss" in e] == pytest.approx(losses, rel=1e-5)
    assert got["lora"].keys() == one["lora"].keys()
    assert any(v.abs().max() > 0 for k, v in one["lora"].items() if "lora_B" in k)  # the adapter moved from B = 0
    for key, value in one["lora"].items():
        assert got["lora"][key].shape == value.shape, key
        assert (got["lora"][key] - value).abs().max() < 1e-5, key
    # the shared prefix served the base view (with grad) and the measurement views (without) in every process
    assert len(got["counts"]) == processes
    for counts in [*one["counts"], *got["counts"]]:
        assert counts["with_grad"] > 0 and counts["no_grad"] > 0, counts
    assert "share_prefix off" not in got["stderr"] and got["stderr"].count("nlft train: nlft done") == 1


def test_every_shipped_config_is_a_known_accelerate_setup():
    names = {p.name for p in CONFIGS.glob("*.yaml")}
    assert names == {"single_gpu.yaml", "multi_gpu.yaml", "fsdp2.yaml", "zero2.yaml", "zero3.yaml"}
    kinds = {name: yaml.safe_load((CONFIGS / name).read_text()) for name in names}
    assert kinds["fsdp2.yaml"]["fsdp_config"]["fsdp_version"] == 2
    assert kinds["zero2.yaml"]["deepspeed_config"]["zero_stage"] == 2
    assert kinds["zero3.yaml"]["deepspeed_config"]["zero_stage"] == 3
    assert {k["distributed_type"] for k in kinds.values()} == {"NO", "MULTI_GPU", "FSDP", "DEEPSPEED"}
    readme = (REPO / "README.md").read_text()
    for name in names:
        assert f"configs/accelerate/{name}" in readme, name
