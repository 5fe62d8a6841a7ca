#!/usr/bin/env bash
# One GPU check, at most 10 minutes, one JSON: what this CPU machine cannot measure.
#   1. bfloat16 step costs of a random LLaMA-3-8B-shaped model (benchmarks/step_cost.py: the configurations of
#      gpu_step_cost.sh but the reference-style step: SFT, TRL SFT, NLFT dynamic, shared prefix, packed, cached);
#   2. token classes in bfloat16 against float32 (benchmarks/bf16_classes.py) on the GPU's kernels. SmolLM2's
#      weights (98 MB as GGUF) do not fit the 64 MiB that travels to the machine: the model there has random
#      weights in SmolLM2-135M's shape, so the figure is the kernels' numerics, not SmolLM2's classes;
#   3. the attention implementations installed there (sdpa, eager, flash_attention_2 if flash_attn imports) with
#      the shared-prefix and packed paths against full padded rows (benchmarks/attn_check.py);
#   4. whether DeepSpeed imports (the ZeRO configs of configs/accelerate/ need it; it is built from source, so it
#      cannot travel as a wheel): where it does, two NLFT steps of a tiny model under zero2.yaml and zero3.yaml
#      (one process); where it does not, the ZeRO configs stay untested.
#
# Here, once (needs the package index; .whl/ and .gpu/ are ignored by git):
#   bash benchmarks/gpu_check.sh --prepare
# There (the device tool's run, carrying .whl and .gpu):
#   bash benchmarks/gpu_check.sh "$OUT/gpu_check.json"
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    # The packages the GPU image lacks or holds too old (transformers there is 5.17; nlft needs >= 5.23), at
    # the versions of this environment, as wheels for that machine's Python 3.12.
    exclude=$(git rev-parse --git-path info/exclude)
    for dir in /.whl/ /.gpu/; do grep -qx "$dir" "$exclude" 2>/dev/null || echo "$dir" >> "$exclude"; done
    py=${PYTHON:-python3}  # the Python of nlft's environment: its package versions are the ones fetched
    pkgs=$("$py" - <<'PY'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in ("transformers", "peft", "accelerate", "trl", "datasets", "dill",
                                             "multiprocess", "gguf")))
PY
)
    "$py" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl $pkgs
    # SmolLM2's tokenizer and config (not its weights), and GSM8K's train split for the workload's records.
    mkdir -p .gpu/SmolLM2-135M-Instruct .gpu/gsm8k
    src=$(PYTHONPATH=src "$py" -c "from nlft.utils.models import smollm2_path; print(smollm2_path())")
    cp "$src"/{config.json,generation_config.json,tokenizer.json,tokenizer_config.json,chat_template.jinja} \
        .gpu/SmolLM2-135M-Instruct/
    cp "${NLFT_GSM8K_DIR:-../shared/data/gsm8k}/train.jsonl" .gpu/gsm8k/
    du -sh .whl .gpu
    exit 0
fi

out="${1:-gpu_check.json}"
tmp=$(mktemp -d)
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export NLFT_CACHE="$tmp/cache" NLFT_GSM8K_DIR="$PWD/.gpu/gsm8k"
# SmolLM2-135M's folder with random weights (its tokenizer is what step_cost.py and bf16_classes.py read).
mkdir -p "$NLFT_CACHE"
cp -r .gpu/SmolLM2-135M-Instruct "$NLFT_CACHE/"
python3 - <<'PY'
import os, torch
from transformers import AutoConfig, AutoModelForCausalLM
path = os.path.join(os.environ["NLFT_CACHE"], "SmolLM2-135M-Instruct")
torch.manual_seed(0)
AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path)).save_pretrained(path)
PY

status() { echo "{\"seconds\": $SECONDS, \"rc\": $1}"; }
set +e
timeout 330 python3 benchmarks/step_cost.py --model llama3-8b-shape --long-prompt --kinds mixed --warmup 1 --reps 3 \
    --configs sft_nll sft_shared sft_packed trl_sft nlft_dynamic nlft_dynamic_shared nlft_dynamic_packed nlft_cached \
    --json "$tmp/step_cost.json" > "$tmp/step_cost.log" 2>&1; step_rc=$?
timeout 90 python3 benchmarks/bf16_classes.py --rows 24 --json "$tmp/bf16_classes.json" > "$tmp/classes.log" 2>&1
classes_rc=$?
timeout 90 python3 benchmarks/attn_check.py --json "$tmp/attn.json" > "$tmp/attn.log" 2>&1; attn_rc=$?
deepspeed=$(python3 -c "import deepspeed; print(deepspeed.__version__)" 2>/dev/null || echo "not installed")
zero_rc="{}"
if [ "$deepspeed" != "not installed" ]; then
    # Two NLFT steps on a tiny random model under each ZeRO config, one process.
    python3 - "$tmp" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, "tests")
from support import build_tiny_tokenizer, sample_records, save_tiny_model
tmp = Path(sys.argv[1])
save_tiny_model(tmp / "tiny", build_tiny_tokenizer())
(tmp / "nlft.jsonl").write_text("".join(json.dumps({**r, "id": f"r{i}"}) + "\n" for i, r in enumerate(sample_records())))
PY
    zero_rc="{"
    for z in zero2 zero3; do
        timeout 120 python3 -m accelerate.commands.launch --config_file "configs/accelerate/$z.yaml" --num_processes 1 \
            -m nlft.cli train --method nlft --model "$tmp/tiny" --data "$tmp/nlft.jsonl" --out "$tmp/$z" --max-steps 2 \
            --batch-size 2 --no-progress --drift-action off > "$tmp/$z.log" 2>&1
        zero_rc="$zero_rc\"$z\": $?, "
    done
    zero_rc="${zero_rc%, }}"
fi
set -e

python3 - "$out" "$tmp" "$step_rc" "$classes_rc" "$attn_rc" "$deepspeed" "$zero_rc" <<'PY'
import json, subprocess, sys
from pathlib import Path
out, tmp, step_rc, classes_rc, attn_rc, deepspeed, zero_rc = sys.argv[1:]
tmp = Path(tmp)

def part(name, log, rc):
    path = tmp / name
    if path.exists():
        return {"rc": int(rc), **json.loads(path.read_text())}
    return {"rc": int(rc), "error": (tmp / log).read_text()[-3000:] if (tmp / log).exists() else "no output"}

import torch, transformers, peft, accelerate
report = {
    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    "nvidia_smi": subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"],
                                 capture_output=True, text=True).stdout.strip(),
    "versions": {m.__name__: m.__version__ for m in (torch, transformers, peft, accelerate)},
    "deepspeed": deepspeed,
    "zero": {z: {"rc": rc, "log_history": (tmp / z / "log_history.jsonl").read_text().splitlines()
                 if (tmp / z / "log_history.jsonl").exists() else (tmp / f"{z}.log").read_text()[-2000:]}
             for z, rc in json.loads(zero_rc).items()},
    "step_cost": part("step_cost.json", "step_cost.log", step_rc),
    "bf16_classes": {"weights": "random, SmolLM2-135M's shape (its weights do not travel)",
                     **part("bf16_classes.json", "classes.log", classes_rc)},
    "attention": part("attn.json", "attn.log", attn_rc),
}
Path(out).write_text(json.dumps(report, indent=2) + "\n")
print(f"gpu_check: {out}")
PY
