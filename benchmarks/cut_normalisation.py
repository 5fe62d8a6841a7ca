"""CUT's loss on one fixed batch under its code's per-output average and under a per-token average.

SmolLM2-135M-Instruct at its initial weights (a fresh LoRA), the sample records of the tests (two correct,
two incorrect outputs of different lengths), one batch of all four, CUT's threshold 1.1:

    PYTHONPATH=src:tests python benchmarks/cut_normalisation.py
"""

from __future__ import annotations

import json

import torch


def main() -> None:
    from support import sample_records

    from nlft import NLFTConfig, NLFTTrainer
    from nlft.utils.models import load_model, load_tokenizer

    tokenizer = load_tokenizer("smollm2")
    model = load_model("smollm2").eval()
    records = sample_records()
    report = {}
    for mode in ("example", "token"):
        args = NLFTConfig(output_dir="/tmp/cut-normalisation", report_to=[], use_cpu=True, loss_type="cut",
                          cut_normalisation=mode)
        trainer = NLFTTrainer(model, args=args, train_dataset=records, processing_class=tokenizer)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(records))])
        with torch.no_grad():
            report[mode] = round(float(trainer.compute_loss(model, batch)), 4)
        report["tokens_per_output"] = ((batch["labels"] != -100).sum(-1)).tolist()
        report["correct"] = batch["correct"].tolist()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
