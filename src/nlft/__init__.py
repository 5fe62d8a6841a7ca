"""nlft: Natural Language Fine-Tuning of causal language models.

The trainer and config are imported lazily so that ``import nlft`` (and ``nlft --help``) stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["NLFTConfig", "NLFTTrainer", "__version__"]

if TYPE_CHECKING:
    from nlft.train.config import NLFTConfig
    from nlft.train.trainer import NLFTTrainer


def __getattr__(name: str) -> Any:
    if name == "NLFTConfig":
        from nlft.train.config import NLFTConfig

        return NLFTConfig
    if name == "NLFTTrainer":
        from nlft.train.trainer import NLFTTrainer

        return NLFTTrainer
    raise AttributeError(f"module 'nlft' has no attribute {name!r}")
