"""Training: NLFTConfig, tokenising the views, NLFTTrainer, the baselines (SFT, DFT, ReFT, SDFT), the training recipe
(:func:`run_training`), run directories, callbacks and model cards.

``from nlft.train import TrainOptions, run_training`` is the library form of ``nlft train``; the
names are imported lazily, so that importing a submodule stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["TrainOptions", "TrainResult", "run_training"]

if TYPE_CHECKING:
    from nlft.train.options import TrainOptions
    from nlft.train.recipe import TrainResult, run_training


def __getattr__(name: str) -> Any:
    if name == "TrainOptions":
        from nlft.train.options import TrainOptions

        return TrainOptions
    if name in ("TrainResult", "run_training"):
        from nlft.train.recipe import TrainResult, run_training

        return {"TrainResult": TrainResult, "run_training": run_training}[name]
    raise AttributeError(f"module 'nlft.train' has no attribute {name!r}")
