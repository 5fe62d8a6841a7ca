"""Which attention implementations are installed, and whether the shared-prefix and packed paths agree under each.

Usage::

    PYTHONPATH=src python benchmarks/attn_check.py --json attn.json   # CUDA: bfloat16; CPU: float32

For each of ``sdpa``, ``eager`` and ``flash_attention_2`` (when ``flash_attn`` imports), a small random
Llama (4 layers, hidden 256) with that implementation computes the per-token log-probabilities and the
LoRA gradients of one batch padded with full rows (the reference), with the shared prefix, and packed
(``padding_free``; where :func:`nlft.method.logps.supports_packing` says the implementation takes the
block-causal mask, else it runs padded and says so). Reported: the largest differences from the reference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def implementations() -> list[str]:
    from transformers.utils import is_flash_attn_2_available

    return ["sdpa", "eager"] + (["flash_attention_2"] if is_flash_attn_2_available() else [])


def check(impl: str, device: str, dtype: Any) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from nlft.method.logps import pad_views, supports_packing, view_logps

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, attn_implementation=impl)
    model = get_peft_model(LlamaForCausalLM(config).to(device=device, dtype=dtype),
                           LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "up_proj"]))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    prefix = torch.randint(3, 1000, (40,)).tolist()
    rests = [torch.randint(3, 1000, (n,)).tolist() for n in (5, 17, 9)]
    responses = [torch.randint(3, 1000, (n,)).tolist() for n in (30, 12, 21)]

    def run(prompts: list[list[int]], **kw: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        batch = {k: v.to(device) for k, v in pad_views(prompts, responses, 0).items()}
        logps = view_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"], **kw)[0]
        logps.sum().backward()
        return logps.detach().float(), {n: p.grad.float().clone() for n, p in model.named_parameters()
                                         if p.requires_grad}

    ref, ref_grads = run([prefix + r for r in rests])
    out: dict[str, Any] = {"packed_taken": supports_packing(model)}
    for name, kw in (("shared_prefix", {"prefix_ids": torch.tensor(prefix)}),
                     ("packed", {"packed": True}),
                     ("shared_prefix_packed", {"prefix_ids": torch.tensor(prefix), "packed": True})):
        prompts = rests if "prefix_ids" in kw else [prefix + r for r in rests]
        try:
            got, grads = run(prompts, **kw)
        except Exception as err:  # an implementation that refuses a path is a finding, not a crash
            out[name] = {"error": f"{type(err).__name__}: {err}"[:500]}
            continue
        scale = max(g.abs().max().item() for g in ref_grads.values())
        out[name] = {"max_logp_diff": (got - ref).abs().max().item(),
                     "max_grad_diff_rel": max((grads[k] - ref_grads[k]).abs().max().item() for k in grads) / scale}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    report = {"device": torch.cuda.get_device_name() if cuda else "cpu", "dtype": str(dtype),
              "implementations": {impl: check(impl, device, dtype) for impl in implementations()}}
    from workload import emit

    emit(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
