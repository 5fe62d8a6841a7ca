"""How an NLFT step's cost grows with model size and prompt length: NLFT dynamic / SFT, time and peak memory.

Usage::

    PYTHONPATH=src python benchmarks/scale_cost.py --json scale.json                       # the whole table (CPU)
    PYTHONPATH=src python benchmarks/scale_cost.py --shapes 135m --prompts brief --steps 2  # one cell
    PYTHONPATH=src python benchmarks/scale_cost.py --bf16-packed --json bf16_packed.json    # bf16: packed vs padded

Models are random weights built from the configs of SmolLM2-135M, SmolLM2-360M and SmolLM2-1.7B
(SmolLM2's tokenizer; no download), float32 on CPU, LoRA r 16 on the MLP without dropout. Prompts: ``brief``
(one line of instruction, about 60 tokens), ``solve`` (the paper's A.2 prompt, five worked examples, about
460 tokens) and ``long`` (the A.2 examples three times, about 1,500 tokens). Configurations, each with the
trainer's own ``training_step`` plus the optimizer step on the same batch of ``--batch-size`` GSM8K rows
(half correct): ``sft`` (``loss_type="nll"``) and ``nlft`` (dynamic view probabilities), each with and
without the shared prompt prefix (``_shared``). Each (shape, prompt, configuration) runs in a fresh child
process: ``--steps`` steps, the first untimed, the median of the others reported; peak resident memory
(VmHWM, reset once the model and trainer are built) and ``step_mb``, the part above what was resident
before the first step.

``--bf16-packed``: the SmolLM2-135M shape in bfloat16, NLFT dynamic with the shared prefix, padded rows
against packed rows (``padding_free``) and packed rows upcasting all their positions to float32 at once
(``chunk`` off, as before the packed path upcast one padded row's width at a time): peak memory of a step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from step_cost import _proc_kb, _reset_peak_rss

# SmolLM2's released configs (hidden, MLP, layers, heads, key/value heads); vocabulary 49152, tied embeddings.
SHAPES = {
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3),
    "360m": dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
                 num_key_value_heads=5),
    "1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                 num_key_value_heads=32),
}
PROMPTS = ("brief", "solve", "long")
CONFIGS = ("sft", "sft_shared", "nlft", "nlft_shared")


def template(prompt: str) -> str:
    """The X_base template of ``prompt``: ``long`` repeats the A.2 prompt's worked examples three times."""
    from nlft.tasks.prompts import BRIEF_TEMPLATE, SOLVE_TEMPLATE

    if prompt == "brief":
        return BRIEF_TEMPLATE
    if prompt == "solve":
        return SOLVE_TEMPLATE
    if prompt == "long":
        head, rest = SOLVE_TEMPLATE.split("Here are some examples:\n\n", 1)
        examples, tail = rest.split("Now solve this problem.", 1)
        return head + "Here are some examples:\n\n" + examples * 3 + "Now solve this problem." + tail
    raise ValueError(f"prompt must be one of {', '.join(PROMPTS)}, got {prompt!r}")


def build_model(shape: str, dtype: Any) -> Any:
    import torch
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    from workload import lora_config

    config = LlamaConfig(**SHAPES[shape], vocab_size=49152, max_position_embeddings=8192, rope_theta=100000.0,
                         tie_word_embeddings=True, pad_token_id=2, bos_token_id=1, eos_token_id=2,
                         attn_implementation="sdpa")
    torch.manual_seed(0)
    return get_peft_model(LlamaForCausalLM(config).to(dtype), lora_config(0.0))


def child(args: argparse.Namespace) -> dict[str, Any]:
    """``--steps`` steps of one configuration in this fresh process: step times and peak memory."""
    import torch
    from workload import realistic_records

    from nlft.train.config import NLFTConfig
    from nlft.train.trainer import NLFTTrainer
    from nlft.utils.models import load_tokenizer

    torch.set_num_threads(args.threads)
    config = args.child
    bf16 = args.bf16_packed
    if config == "nlft_packed_unchunked":  # the packed path as it was: every position upcast at once
        import nlft.method.logps as logps

        whole = logps.selective_log_softmax
        logps.selective_log_softmax = lambda *a, chunk=None, **kw: whole(*a, **kw, chunk=1 << 30)
    tokenizer = load_tokenizer("smollm2")
    records = realistic_records(tokenizer, args.batch_size, correct_share=0.5)
    model = build_model(args.shape, torch.bfloat16 if bf16 else torch.float32)
    with tempfile.TemporaryDirectory() as out:
        cfg = NLFTConfig(output_dir=out, loss_type="nll" if config.startswith("sft") else "nlft",
                         per_device_train_batch_size=args.batch_size, report_to=[], use_cpu=True, bf16=False,
                         share_prefix="shared" in config or bf16, padding_free="packed" in config,
                         base_template=template(args.prompt), use_chat_template=True)
        trainer = NLFTTrainer(model, args=cfg, train_dataset=records, processing_class=tokenizer)
        trainer.create_optimizer_and_scheduler(num_training_steps=100)
        feats = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
        batch = trainer.data_collator(feats)
        n_items = int((batch["labels"] != -100).sum())
        prompt_tokens = [len(f["base_prompt_ids"]) for f in feats]
        exact = _reset_peak_rss()
        before = _proc_kb("VmRSS")
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            trainer.training_step(trainer.model, batch, n_items)
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - start)
        peak = _proc_kb("VmHWM") if exact else None
    timed = times[1:] or times
    return {"step_s": statistics.median(timed), "times": times, "peak_mb": peak / 1024 if peak else None,
            "step_mb": (peak - before) / 1024 if peak else None, "prompt_tokens": prompt_tokens,
            "response_tokens": n_items, "prefix_tokens": int(batch["prefix_ids"].shape[0]) if "prefix_ids" in batch
            else 0}


def run_child(args: argparse.Namespace, shape: str, prompt: str, config: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", config, "--shape", shape, "--prompt", prompt, "--steps",
           str(args.steps), "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    cmd += ["--bf16-packed"] if args.bf16_packed else []
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--prompts", nargs="+", default=list(PROMPTS), choices=PROMPTS)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--steps", type=int, default=2, help="steps per configuration (the first untimed)")
    parser.add_argument("--batch-size", type=int, default=2, help="rows per step (half correct)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16-packed", action="store_true", help="the bfloat16 packed-vs-padded memory run")
    parser.add_argument("--skip", nargs="*", default=[], metavar="SHAPE:PROMPT", help="cells not run (too slow)")
    parser.add_argument("--shape", default="135m", choices=list(SHAPES), help=argparse.SUPPRESS)
    parser.add_argument("--prompt", default="solve", choices=PROMPTS, help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0
    cells: dict[str, Any] = {}
    if args.bf16_packed:
        for config in ("nlft_padded", "nlft_packed", "nlft_packed_unchunked"):
            cells[config] = run_child(args, "135m", "solve", config)
            print(config, json.dumps(cells[config]), file=sys.stderr, flush=True)
    else:
        for shape in args.shapes:
            for prompt in args.prompts:
                if f"{shape}:{prompt}" in args.skip:
                    continue
                cell = {c: run_child(args, shape, prompt, c) for c in args.configs}
                for shared in ("", "_shared"):
                    sft, nlft = cell.get("sft" + shared, {}), cell.get("nlft" + shared, {})
                    if "step_s" in sft and "step_s" in nlft:
                        cell["ratio" + shared] = {"time": nlft["step_s"] / sft["step_s"],
                                                  "peak": nlft["peak_mb"] / sft["peak_mb"],
                                                  "step_mb": nlft["step_mb"] / sft["step_mb"]}
                cell["nlft_shared_vs_sft_shared_extra_mb"] = (
                    cell.get("nlft_shared", {}).get("peak_mb", 0) - cell.get("sft_shared", {}).get("peak_mb", 0))
                cells[f"{shape}:{prompt}"] = cell
                print(shape, prompt, json.dumps({k: v for k, v in cell.items() if k.startswith("ratio")}),
                      file=sys.stderr, flush=True)
                if args.json:  # after every cell: a run cut short keeps what it measured
                    args.json.write_text(json.dumps({"cells": cells}, indent=2) + "\n")
    report = {"args": {k: v for k, v in vars(args).items() if k not in ("json", "child")}, "cells": cells}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    else:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
