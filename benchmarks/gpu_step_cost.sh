#!/usr/bin/env bash
# The long-prompt step on a GPU: a random LLaMA-3-8B-shaped model in bfloat16 (built from a config, no
# download), SFT and NLFT dynamic with and without the shared prompt prefix and padding-free rows, times and peak memory
# (torch.cuda.max_memory_allocated). One command; the JSON goes to $1 (default gpu_step_cost.json).
#   bash benchmarks/gpu_step_cost.sh gpu_step_cost.json
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_step_cost.json}"
PYTHONPATH=src python benchmarks/step_cost.py --model llama3-8b-shape --long-prompt --kinds mixed --reps 5 \
    --configs sft_nll sft_shared sft_packed trl_sft nlft_dynamic nlft_dynamic_shared nlft_dynamic_packed nlft_cached \
    refstyle --json "$out"
