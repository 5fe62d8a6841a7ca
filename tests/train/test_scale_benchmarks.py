"""The scale, bfloat16 and GPU-check benchmarks' own pieces: prompts, the attention check, the GPU script."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import REPO, needs_gsm8k

sys.path.insert(0, str(REPO / "benchmarks"))

import attn_check
import bf16_classes
import scale_cost


def test_long_prompt_repeats_the_worked_examples_three_times():
    from nlft.tasks.prompts import SOLVE_TEMPLATE

    long = scale_cost.template("long")
    example = "Question: A box holds 12 eggs."
    assert SOLVE_TEMPLATE.count(example) == 1 and long.count(example) == 3
    assert long.count("{question}") == 1 and long.endswith(SOLVE_TEMPLATE.split("Now solve this problem.")[1])
    assert len(scale_cost.template("brief")) < len(SOLVE_TEMPLATE) < len(long) < 4 * len(SOLVE_TEMPLATE)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_attention_check_finds_the_paths_equal_on_cpu(impl):
    import torch

    got = attn_check.check(impl, "cpu", torch.float32)
    assert got["packed_taken"]
    for path in ("shared_prefix", "packed", "shared_prefix_packed"):
        assert got[path]["max_logp_diff"] < 1e-4 and got[path]["max_grad_diff_rel"] < 1e-4, (path, got[path])


def test_bf16_comparison_counts_changes_and_transitions():
    a = {"classes": [[0, 2, 3]], "scales": [[1.0, 0.0, 2.0]], "p_base": [[0.5, 0.9, 0.01]]}
    b = {"classes": [[0, 1, 5]], "scales": [[1.0, 0.5, 0.0]], "p_base": [[0.5, 0.8, 0.01]]}
    got = bf16_classes.compare(a, b)
    assert got["tokens"] == 3 and got["class_changed"] == 2
    assert got["transitions"] == {"irrelevant_correct -> sub_saliency": 1, "erroneous -> irrelevant_incorrect": 1}
    assert got["max_scale_diff"] == 2.0 and got["mean_scale_diff"] == pytest.approx(2.5 / 3)
    assert got["max_p_base_diff"] == pytest.approx(0.1)


def test_gpu_check_script_parses():
    assert subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "gpu_check.sh")]).returncode == 0


@needs_gsm8k
@pytest.mark.slow
def test_scale_cell_runs_on_a_tiny_budget(tmp_path):
    """One configuration of the smallest shape and prompt, one step: the report's fields."""
    out = tmp_path / "cell.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "scale_cost.py"), "--shapes", "135m",
                           "--prompts", "brief", "--configs", "sft_shared", "nlft_shared", "--steps", "1",
                           "--threads", "1", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    cell = json.loads(out.read_text())["cells"]["135m:brief"]
    assert cell["nlft_shared"]["prefix_tokens"] > 0 and cell["nlft_shared"]["response_tokens"] > 0
    assert cell["ratio_shared"]["time"] > 0 and cell["ratio_shared"]["peak"] > 0
