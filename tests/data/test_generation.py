"""Local generation: truncation at the answer line, per-row seeds, batching independence (tiny model)."""

from __future__ import annotations

import pytest
import torch

from nlft.data.generation import derive_seed, generate_hf, generate_hf_with_counts, truncate_output


def test_truncate_output() -> None:
    text = "24 + 48 = 72\n#### 72\n\nQuestion: next one\nAnswer: 5"
    assert truncate_output(text) == "24 + 48 = 72\n#### 72"
    assert truncate_output("So 3 boxes.\n#### 3 boxes\nmore text") == "So 3 boxes.\n#### 3 boxes"
    assert truncate_output("No answer yet\nQuestion: a new question") == "No answer yet"
    assert truncate_output("  Unfinished reasoning 12 + ") == "Unfinished reasoning 12 +"
    assert truncate_output("#### 1,250") == "#### 1,250"


def test_derive_seed_is_stable_and_distinct() -> None:
    assert derive_seed(0, "gsm8k-train-0", 0) == derive_seed(0, "gsm8k-train-0", 0)
    seeds = {derive_seed(s, rid, k) for s in (0, 1) for rid in ("a", "b") for k in (0, 1)}
    assert len(seeds) == 8
    assert 0 <= derive_seed(5, "x") < 2**63
    assert derive_seed(0, "a", 0) != derive_seed(0, "a0")


@pytest.fixture(scope="module")
def tiny(tokenizer) -> tuple[object, object]:
    """A 2-layer random Llama with the tiny tokenizer (built in-process)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    return LlamaForCausalLM(config).eval(), tokenizer


PROMPTS = ["What is 2 + 2?", "A much longer question about apples, pears and the price of both together?",
           "Tell me 7 * 6."]


def test_sampling_per_row_seed_does_not_depend_on_the_batch(tiny: tuple) -> None:
    model, tokenizer = tiny
    kw = {"max_new_tokens": 12, "temperature": 1.0, "progress": False, "stop_at_answer": False}
    together = generate_hf(model, tokenizer, PROMPTS, seeds=[11, 22, 33], batch_size=3, **kw)
    alone = [generate_hf(model, tokenizer, [p], seeds=[s], batch_size=1, **kw)[0]
             for p, s in zip(PROMPTS, [11, 22, 33])]
    assert together == alone
    assert all(t.strip() for t in together)
    again = generate_hf(model, tokenizer, PROMPTS, seeds=[11, 22, 33], batch_size=2, **kw)
    assert again == together
    other = generate_hf(model, tokenizer, PROMPTS, seeds=[12, 23, 34], batch_size=3, **kw)
    assert other != together


def test_greedy_is_deterministic_and_counts_tokens(tiny: tuple) -> None:
    model, tokenizer = tiny
    kw = {"max_new_tokens": 8, "batch_size": 2, "progress": False, "stop_at_answer": False}
    first = generate_hf_with_counts(model, tokenizer, PROMPTS, **kw)
    second = generate_hf_with_counts(model, tokenizer, PROMPTS, **kw)
    assert first == second
    for text, n in first:
        assert n == len(tokenizer(text, add_special_tokens=False)["input_ids"])
        assert n > 0  # the count is of the stored text, as the trainer will tokenize it


def test_chat_flag_wraps_the_prompt(tiny: tuple) -> None:
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="seeds"):
        generate_hf(model, tokenizer, PROMPTS, seeds=[1], progress=False)
    with pytest.raises(ValueError, match="temperature"):
        generate_hf(model, tokenizer, PROMPTS, temperature=-1, progress=False)
    out = generate_hf(model, tokenizer, PROMPTS[:1], max_new_tokens=4, chat=True, progress=False,
                      stop_at_answer=False)
    assert len(out) == 1


SHARED = "You are a careful solver. Here are worked examples: 3 + 4 = 7; 10 - 2 = 8; 6 * 7 = 42. Now: "


def test_prefix_cache_gives_the_same_outputs_and_is_reused(tiny: tuple) -> None:
    """The shared prefix runs once; greedy and sampled outputs equal those of plain left-padded batches."""
    from nlft.data.generation import PrefixCache

    model, tokenizer = tiny
    prompts = [SHARED + p for p in PROMPTS]
    for kw in ({"temperature": 0.0}, {"temperature": 1.0, "seeds": [5, 6, 7]}):
        plain = generate_hf_with_counts(model, tokenizer, prompts, max_new_tokens=10, batch_size=3, progress=False,
                                        stop_at_answer=False, **kw)
        cache = PrefixCache(min_tokens=8)
        shared = generate_hf_with_counts(model, tokenizer, prompts, max_new_tokens=10, batch_size=3,
                                         progress=False, stop_at_answer=False, prefix_cache=cache, **kw)
        assert shared == plain
        assert all(t.strip() for t, _ in plain)
        assert cache.builds == 1 and len(cache.ids) >= len(tokenizer(SHARED)["input_ids"]) - 1
    # a later call (another batch of the same evaluation) reuses the prefix, even for a single prompt
    again = generate_hf(model, tokenizer, prompts[2:], max_new_tokens=10, batch_size=1, progress=False,
                        stop_at_answer=False, prefix_cache=cache)
    assert (cache.builds, cache.hits) == (1, 1)
    greedy_single = generate_hf(model, tokenizer, prompts[2:], max_new_tokens=10, progress=False,
                                stop_at_answer=False)
    assert again == greedy_single
    # prompts without a common prefix of min_tokens: no cache is built, plain batches run
    other = PrefixCache(min_tokens=8)
    generate_hf(model, tokenizer, PROMPTS, max_new_tokens=2, batch_size=3, progress=False, prefix_cache=other)
    assert other.builds == 0 and other.kv is None


def test_generation_stops_after_the_tasks_answer_line():
    from nlft.data.build import stop_rule
    from nlft.tasks.registry import get_task

    line = get_task("choice").answer_line
    assert truncate_output("Paris is B.\n#### B\nMore words", line) == "Paris is B.\n#### B"
    assert truncate_output("Paris is B.\n#### B\nMore words") == "Paris is B.\n#### B\nMore words"  # numbers: '#### N'
    assert truncate_output("2 + 2 = 4\n#### 4\nMore") == "2 + 2 = 4\n#### 4"
    assert stop_rule([{"task": "choice"}]) == (True, line)
    assert stop_rule([{"gold": "4"}]) == (True, None)
