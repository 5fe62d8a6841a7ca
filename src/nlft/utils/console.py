"""A quiet console: the libraries' progress bars, info lines and deprecation warnings off unless ``--verbose``.

Every ``nlft`` command calls :func:`quiet_libraries` before its heavy imports, so that a command
prints one progress bar per stage (its own) and its results. ``--verbose`` (or ``NLFT_VERBOSE=1``)
leaves the libraries as they are: transformers' loading bars, the Trainer's printed log dicts and
every warning come back.
"""

from __future__ import annotations

import os
import sys
import warnings

_VERBOSE = False

# Read by transformers, huggingface_hub and datasets when they are imported (setdefault: the user's wins).
QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "DATASETS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
    "TRL_EXPERIMENTAL_SILENCE": "1",  # nlft imports TRL's PPO and SDFT from trl.experimental on purpose
}
# Deprecations raised by the libraries' own code (PEFT reads `is_gradient_checkpointing`), not by ours.
LIBRARY_MODULES = r"(transformers|peft|trl|accelerate|datasets|torch)(\.|$)"
# Torch's DataLoader warns on CPU when pin_memory is asked for; nlft turns it off on CPU, TRL's dataloaders may not.
IGNORED_MESSAGES = (r"'pin_memory' argument is set as true but no accelerator",)


def verbose() -> bool:
    """Whether ``--verbose`` was given (or ``NLFT_VERBOSE`` is set)."""
    return _VERBOSE or os.environ.get("NLFT_VERBOSE", "") not in ("", "0")


def quiet_libraries(verbose_: bool = False) -> None:
    """Silence the libraries' console output unless ``verbose_``; call it before importing them."""
    global _VERBOSE
    _VERBOSE = bool(verbose_)
    if verbose():
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=LIBRARY_MODULES)
    for message in IGNORED_MESSAGES:
        warnings.filterwarnings("ignore", message=message)
    # Libraries imported already read the environment too early: tell them directly.
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
