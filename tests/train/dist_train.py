"""One NLFT step on the tiny model, run by tests/train/test_distributed.py under 1 or 2 processes.

Usage: python tests/dist_train.py OUT.json PER_DEVICE_BATCH  (under accelerate launch for 2 processes)

Each process also writes the NLFT metrics of its own batches to ``OUT.json.rankN``; the trainer logs
the means gathered over all processes (``nlft.train.progress.gather_metric_means``). With them, what the
forward passes of the causal LM inside every wrapper received: how many took a shared prefix's
key/value cache, a packed block-causal (4D) mask, and returned logits for fewer columns than they ran
(``logits_to_keep``), so that a test sees the step's fast path run under DDP as it does in one process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: support.py
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from peft import LoraConfig
from support import build_tiny_tokenizer, make_tiny_model, sample_records

from nlft import NLFTConfig, NLFTTrainer
from nlft.train.progress import gather_metric_means
from nlft.train.recipe import end_processes


class GatheringTrainer(NLFTTrainer):
    """NLFTTrainer whose ``log`` gathers the metrics of every process (the change proposed for NLFTTrainer.log)."""

    local: dict[str, list[float]] | None = None
    in_step = False  # inside compute_loss: the training step's forwards (not the passes before training)

    def compute_loss(self, *args: object, **kwargs: object) -> object:
        self.in_step = True
        try:
            return super().compute_loss(*args, **kwargs)
        finally:
            self.in_step = False

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        if mode == "train" and self._metrics[mode]:
            self.local = {k: list(v) for k, v in self._metrics[mode].items()}
        metrics = gather_metric_means(self._metrics[mode], self.accelerator)
        if mode == "eval":
            metrics = {f"eval_{k}": v for k, v in metrics.items()}
        super(NLFTTrainer, self).log({**logs, **metrics}, start_time)
        self._metrics[mode].clear()


def main() -> None:
    out, bsz = sys.argv[1], int(sys.argv[2])
    tokenizer = build_tiny_tokenizer()
    args = NLFTConfig(output_dir=str(Path(out).parent / "trainer"), report_to="none", save_strategy="no", use_cpu=True,
                      disable_tqdm=True, max_steps=1, per_device_train_batch_size=bsz, optim="sgd", learning_rate=1.0,
                      lr_scheduler_type="constant", max_grad_norm=0.0, weight_decay=0.0, r0=1.0, p0_incorrect=0.0,
                      seed=0, data_seed=0, dataloader_drop_last=False)
    torch.manual_seed(0)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["gate_proj", "up_proj", "down_proj"],
                      task_type="CAUSAL_LM", init_lora_weights="gaussian")
    trainer = GatheringTrainer(make_tiny_model(len(tokenizer)), args, train_dataset=sample_records(),
                          processing_class=tokenizer, peft_config=lora)
    forwards = {"calls": 0, "prefix_cache": 0, "packed": 0, "logits_to_keep": 0}

    def count(module: torch.nn.Module, args: tuple, kwargs: dict, output: object) -> None:
        if not trainer.in_step:
            return
        forwards["calls"] += 1
        forwards["prefix_cache"] += kwargs.get("cache", kwargs.get("past_key_values")) is not None
        mask = kwargs.get("attention_mask")
        forwards["packed"] += mask is not None and mask.dim() == 4
        forwards["logits_to_keep"] += output.logits.shape[1] < kwargs["input_ids"].shape[1]

    trainer.model.get_base_model().register_forward_hook(count, with_kwargs=True)
    trainer.train()
    Path(f"{out}.rank{trainer.accelerator.process_index}").write_text(
        json.dumps({"metrics": trainer.local or {}, "forwards": forwards}))
    if trainer.is_world_process_zero():
        state = {k: v.detach().double().sum().item() for k, v in trainer.model.named_parameters() if "lora_" in k}
        payload = {"loss": trainer.state.log_history[0]["loss"], "lora": state, "logged": trainer.state.log_history[0],
                   "world_size": trainer.accelerator.num_processes, "forwards": forwards}
        Path(out).write_text(json.dumps(payload))
    end_processes()


if __name__ == "__main__":
    main()
