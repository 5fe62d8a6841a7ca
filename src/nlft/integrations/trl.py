"""TRL's ``SFTTrainer`` on an exported NLFT weights file (``nlft weights``)::

    from nlft.integrations.trl import NLFTWeightsTrainer
    trainer = NLFTWeightsTrainer("HuggingFaceTB/SmolLM2-135M-Instruct", train_dataset="weights.jsonl")
    trainer.train()

The implementation lives in :mod:`nlft.train.weights_trainer` (next to the trainer whose step it reproduces).
"""

from nlft.train.weights_trainer import (
    WEIGHT_COLUMNS,
    NLFTWeightsTrainer,
    WeightsCollator,
    weighted_token_loss,
    weights_dataset,
    weights_rows,
)

__all__ = ["WEIGHT_COLUMNS", "NLFTWeightsTrainer", "WeightsCollator", "weighted_token_loss", "weights_dataset",
           "weights_rows"]
