"""The workload shared by the benchmarks: realistic NLFT records, the model, the LoRA, the configs.

Records are built from GSM8K train questions and their reference solutions. Outputs imitate a small
instruct model's chain of thought (a restated problem, numbered steps, a closing sentence, about
150-250 tokens); incorrect outputs get a wrong last calculation, and their judgments (about 60-120
tokens) name the faulty step the way a judge model does. Prompts are the :class:`nlft.NLFTConfig`
default templates under SmolLM2's chat template.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GSM8K_DIR = Path(os.environ.get("NLFT_GSM8K_DIR", REPO.parent / "shared" / "data" / "gsm8k"))
LORA_TARGETS = ("gate_proj", "up_proj", "down_proj")

# LLaMA-3-8B's shape, for the GPU path (random weights: the cost does not depend on the values).
LLAMA3_8B_SHAPE = {
    "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 8192, "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
}

_CALC = re.compile(r"<<[^>]*>>")
_LAST_NUMBER = re.compile(r"(-?[\d,]*\.?\d+)(?!.*\d)", re.S)


def _steps(reference: str) -> tuple[list[str], str]:
    lines = [_CALC.sub("", line).strip() for line in reference.split("\n")]
    answer = lines[-1].replace("####", "").strip() if lines and lines[-1].startswith("####") else ""
    return [line for line in lines if line and not line.startswith("####")], answer


def _wrong(number: str) -> str:
    try:
        value = float(number.replace(",", ""))
    except ValueError:
        return number + "1"
    wrong = value + max(1.0, round(abs(value) * 0.2))
    return str(int(wrong)) if wrong == int(wrong) else f"{wrong:.2f}"


def make_output(question: str, reference: str, correct: bool) -> tuple[str, str | None]:
    """A chain-of-thought output in a small instruct model's style, and a judgment when incorrect."""
    steps, answer = _steps(reference)
    first = question.split(". ")[0].rstrip(".")
    parts = [
        "To solve this problem, let's break it down step by step and keep track of every quantity.",
        f"\n\nFirst, let's understand what we know: {first}. We need to find the number the question asks for, "
        "so we will compute each intermediate value carefully.",
    ]
    final = answer
    bad_step = len(steps)
    for k, step in enumerate(steps, start=1):
        text = step
        if not correct and k == len(steps):
            match = _LAST_NUMBER.search(step)
            final = _wrong(answer)
            text = step[: match.start()] + final + step[match.end():] if match else f"{step} That gives {final}."
        parts.append(f"\n\n**Step {k}:** {text} This follows directly from the information given in the problem.")
    parts.append(f"\n\nNow let's put it all together. After working through each step, we get {final} as the result, "
                 f"which answers the question.\n\nTherefore, the final answer is {final}.\n#### {final}")
    output = "".join(parts)
    if correct:
        return output, None
    judgment = (
        f"The response sets up the problem correctly and its early steps are fine, but step {bad_step} is wrong: "
        f"it writes {final} where the correct value is {answer}. The arithmetic in that step does not follow from "
        f"the quantities computed before it. Because of this mistake the final answer {final} is incorrect; "
        f"carrying out the last calculation correctly gives {answer}."
    )
    return output, judgment


def realistic_records(tokenizer: Any, n: int, *, correct_share: float = 2 / 3, min_tokens: int = 150,
                      max_tokens: int = 250, data_dir: Path | None = None) -> list[dict[str, Any]]:
    """``n`` NLFT records from GSM8K train, ``round(n * correct_share)`` correct then the incorrect ones.

    Only questions whose output is ``min_tokens``-``max_tokens`` tokens long are used, taken in file order.
    """
    path = Path(data_dir or GSM8K_DIR) / "train.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"GSM8K train split not found at {path}; set NLFT_GSM8K_DIR")
    n_correct = round(n * correct_share)
    rows: list[dict[str, Any]] = []
    with path.open() as fh:
        for line in fh:
            if len(rows) == n:
                break
            item = json.loads(line)
            correct = len(rows) < n_correct
            output, judgment = make_output(item["question"], item["answer"], correct)
            size = len(tokenizer(output, add_special_tokens=False)["input_ids"])
            if min_tokens <= size <= max_tokens:
                rows.append({"question": item["question"], "reference": item["answer"], "output": output,
                             "correct": correct, "judgment": judgment})
    if len(rows) < n:
        raise ValueError(f"only {len(rows)} GSM8K questions gave outputs of {min_tokens}-{max_tokens} tokens")
    return rows


def lora_config(dropout: float = 0.05) -> Any:
    """The paper's LoRA: r 16, alpha 16, on the MLP projections."""
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=16, lora_dropout=dropout, target_modules=list(LORA_TARGETS),
                      task_type="CAUSAL_LM")


def load_workload_model(kind: str, device: str) -> Any:
    """``"smollm2"`` (SmolLM2-135M-Instruct, float32) or ``"llama3-8b-shape"`` (random, bfloat16, on ``device``)."""
    import torch

    if kind == "smollm2":
        from nlft.utils.models import load_model

        return load_model("smollm2").to(device)
    if kind == "llama3-8b-shape":
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(**LLAMA3_8B_SHAPE, pad_token_id=2, bos_token_id=1, eos_token_id=2)
        torch.manual_seed(0)
        with torch.device(device):
            model = LlamaForCausalLM(config).to(torch.bfloat16)
        return model
    raise ValueError(f"model must be 'smollm2' or 'llama3-8b-shape', got {kind!r}")


def emit(report: dict[str, Any], path: Path | None) -> None:
    """A benchmark's result: ``report`` as indented JSON, written to ``path`` (when given) and printed."""
    text = json.dumps(report, indent=2)
    if path:
        path.write_text(text + "\n")
    print(text)
