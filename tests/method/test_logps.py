"""Per-view log-probs equal a naive full-softmax computation, and measurement views build no graph."""

from __future__ import annotations

import pytest
import torch
from support import make_tiny_model, make_tiny_sliding_model

from nlft.method.logps import (
    common_prefix,
    pack_rows,
    pad_views,
    selective_log_softmax,
    shared_prefix_kv,
    supports_packing,
    supports_shared_prefix,
    unwrap_model,
    view_logps,
)
from nlft.train.trainer import NLFTCollator, measure_views


def naive_logps(model, prompt: list[int], response: list[int]) -> torch.Tensor:
    """log_softmax over the full vocabulary of the unpadded sequence, read at the response tokens."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    logp = logits.log_softmax(-1)
    return torch.stack([logp[len(prompt) - 1 + i, t] for i, t in enumerate(response)])


def _lora_tiny(seed: int) -> torch.nn.Module:
    """A tiny Llama (vocabulary 300) with LoRA on q, v and up; random B (B = 0 would zero every A gradient)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(make_tiny_model(300), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                            target_modules=["q_proj", "v_proj", "up_proj"]))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)
    return model


def test_selective_log_softmax_matches_full():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    index = torch.randint(0, 11, (2, 5))
    full = logits.log_softmax(-1).gather(-1, index[..., None])[..., 0]
    torch.testing.assert_close(selective_log_softmax(logits, index), full)
    torch.testing.assert_close(selective_log_softmax(logits.bfloat16(), index),
                               logits.bfloat16().float().log_softmax(-1).gather(-1, index[..., None])[..., 0])


def test_half_precision_blocks_give_the_same_values_and_gradients():
    """A packed (1, N, V) bfloat16 block upcast ``chunk`` positions at a time equals it upcast whole, values and
    gradients, log(1 - P) included, and both equal the float32 computation of the same bfloat16 logits."""
    torch.manual_seed(1)
    logits = (torch.randn(1, 11, 37) * 4).bfloat16()
    logits[0, 3, 5] = 30.0  # a token with P near 1: the log(1 - P) branch over the other tokens
    index = torch.randint(0, 37, (1, 11))
    index[0, 3] = 5

    def run(x: torch.Tensor, **kw):
        x = x.clone().requires_grad_(True)
        logp, log1mp = selective_log_softmax(x, index, complement=True, **kw)
        (logp.sum() - 0.3 * log1mp.sum()).backward()
        return logp.detach(), log1mp.detach(), x.grad.float()

    whole, blocks, fp32 = run(logits, chunk=11), run(logits, chunk=4), run(logits.float())
    for a, b, c in zip(whole, blocks, fp32):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
        torch.testing.assert_close(a, c, atol=1e-2, rtol=1e-2)  # the gradient comes back in bfloat16
    assert whole[0].dtype == torch.float32 and whole[1][0, 3] < -15  # log(1 - P) where P rounds to 1


def test_view_logps_equal_naive(tiny_model):
    tiny_model.eval()
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15]]
    responses = [[20, 21, 22], [23, 24, 25, 26, 27], [28]]
    batch = pad_views(prompts, responses, pad_token_id=2)
    with torch.no_grad():
        logps, hidden = view_logps(tiny_model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                   return_hidden=True)
    assert logps.shape == (3, 5) and hidden.shape == (3, 5, 64)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        torch.testing.assert_close(logps[i, : len(r)], naive_logps(tiny_model, p, r), atol=1e-5, rtol=1e-5)
        assert (logps[i, len(r):] == 0).all()
        # hidden state of each response token at its own position, as in an unpadded forward
        with torch.no_grad():
            ref = tiny_model(input_ids=torch.tensor([p + r]), output_hidden_states=True).hidden_states[-1][0]
        torch.testing.assert_close(hidden[i, : len(r)], ref[len(p):], atol=1e-5, rtol=1e-5)


def test_view_logps_on_gpt2_style_model(tokenizer):
    """GPT-2 has learned absolute positions: left padding must not shift them."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2)).eval()
    prompts, responses = [[5, 6, 7, 8], [9]], [[20, 21], [22, 23, 24]]
    batch = pad_views(prompts, responses, pad_token_id=0)
    with torch.no_grad():
        logps, _ = view_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    for i, (p, r) in enumerate(zip(prompts, responses)):
        torch.testing.assert_close(logps[i, : len(r)], naive_logps(model, p, r), atol=1e-5, rtol=1e-5)


def test_measure_views_runs_without_graph_in_eval_mode(tiny_model, tokenizer, records):
    from nlft.train.config import NLFTConfig
    from nlft.train.views import tokenize_record

    cfg = NLFTConfig(output_dir="unused", report_to="none")
    feats = []
    for i, row in enumerate(records):
        tok = tokenize_record(row, tokenizer, base_template=cfg.base_template, standard_template=cfg.standard_template,
                              judge_template=cfg.judge_template)
        feats.append({**tok, "row_idx": i})
    batch = NLFTCollator(tokenizer.pad_token_id)(feats)
    # 4 standard views + 2 judge views (incorrect rows only), stacked in one batch
    assert batch["view_kind"].tolist().count(0) == 4 and batch["view_kind"].tolist().count(1) == 2
    seen = []
    hook = tiny_model.register_forward_hook(lambda m, a, o: seen.append((m.training, torch.is_grad_enabled())))
    tiny_model.train()
    p_std, p_judge = measure_views(tiny_model, batch)
    hook.remove()
    assert seen == [(False, False)] and tiny_model.training
    assert not p_std.requires_grad
    for i, f in enumerate(feats):
        r = f["response_ids"]
        tiny_model.eval()
        torch.testing.assert_close(p_std[i, : len(r)].log(), naive_logps(tiny_model, f["std_prompt_ids"], r),
                                   atol=1e-4, rtol=1e-4)
        if not f["correct"]:
            torch.testing.assert_close(p_judge[i, : len(r)].log(), naive_logps(tiny_model, f["judge_prompt_ids"], r),
                                       atol=1e-4, rtol=1e-4)
        else:
            assert (p_judge[i] == 0).all()


def test_common_prefix_by_hand():
    assert common_prefix([[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 9]], min_tokens=1) == 2
    # every prompt keeps at least one token after the prefix
    assert common_prefix([[1, 2, 3], [1, 2, 3, 4]], min_tokens=1) == 2
    assert common_prefix([[1, 2, 3], [1, 2, 3, 4]], min_tokens=3) == 0  # shorter than min_tokens: none
    assert common_prefix([[1, 2, 3]], min_tokens=1) == 0  # one prompt: nothing to share
    assert common_prefix([[7, 2], [1, 2]], min_tokens=1) == 0


def test_shared_prefix_logps_and_lora_gradients_equal_the_full_computation():
    vocab = 300
    model = _lora_tiny(0)
    prefix = torch.randint(5, vocab, (12,)).tolist()
    prompts = [prefix + torch.randint(5, vocab, (k,)).tolist() for k in (3, 7, 1)]
    responses = [torch.randint(5, vocab, (k,)).tolist() for k in (4, 2, 5)]
    assert common_prefix(prompts, min_tokens=4) == 12

    def step(shared: bool):
        model.zero_grad()
        if shared:
            batch = pad_views([p[12:] for p in prompts], responses, 0)
            logps, hidden, log1mp = view_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                               return_hidden=True, complement=True, prefix_ids=torch.tensor(prefix))
        else:
            batch = pad_views(prompts, responses, 0)
            logps, hidden, log1mp = view_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                               return_hidden=True, complement=True)
        (-logps.sum() - 0.3 * log1mp.sum()).backward()  # both terms of the NLFT loss
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return logps.detach(), hidden, log1mp.detach(), grads

    full, shared = step(False), step(True)
    for a, b in zip(full[:3], shared[:3]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert full[3].keys() == shared[3].keys() and any("lora_A" in k for k in full[3])
    for name in full[3]:
        assert full[3][name].abs().max() > 0, name
        torch.testing.assert_close(full[3][name], shared[3][name], atol=1e-5, rtol=1e-4)
    assert supports_shared_prefix(model)
    with pytest.raises(ValueError, match="after the shared prefix"):
        view_logps(model, torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.long),
                   torch.ones(1, 2, dtype=torch.long), prefix_ids=torch.tensor(prefix))


@pytest.mark.parametrize("packed", [False, True])
def test_one_prefix_computation_serves_several_batches(packed):
    """A PrefixKV continued from by a no-grad batch and a grad batch: each equals its own full computation."""
    vocab = 300
    model = _lora_tiny(2)
    prefix = torch.randint(5, vocab, (10,)).tolist()
    rests = [torch.randint(5, vocab, (k,)).tolist() for k in (2, 5, 1)]
    responses = [torch.randint(5, vocab, (k,)).tolist() for k in (3, 4, 2)]
    views = pad_views(rests[:2], responses[:2], 0)  # a second batch: two rows, other prompts
    views["input_ids"][:, -views["labels"].shape[1] - 1] = 7  # their last prompt token differs
    base = pad_views(rests, responses, 0)
    full_views = pad_views([prefix + r for r in rests[:2]], responses[:2], 0)
    full_views["input_ids"][:, -full_views["labels"].shape[1] - 1] = 7
    full_base = pad_views([prefix + r for r in rests], responses, 0)

    def run(b, **kw):
        return view_logps(model, b["input_ids"], b["attention_mask"], b["labels"], packed=packed, **kw)[0]

    model.zero_grad()
    kv = shared_prefix_kv(model, torch.tensor(prefix), eval_mode=True)
    assert kv is not None and kv.length == 10
    keys_before = [layer.keys.clone() for layer in kv._cache.layers]
    with torch.no_grad():
        got_views = run(views, prefix_ids=torch.tensor(prefix), prefix_kv=kv)
    got_base = run(base, prefix_ids=torch.tensor(prefix), prefix_kv=kv)
    got_base.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    for before, layer in zip(keys_before, kv._cache.layers):  # the prefix's own tensors are left as they were
        assert torch.equal(before, layer.keys) and layer.keys.shape[0] == 1

    model.zero_grad()
    with torch.no_grad():
        want_views = run(full_views)
    want_base = run(full_base)
    want_base.sum().backward()
    torch.testing.assert_close(got_views, want_views, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_base.detach(), want_base.detach(), atol=1e-5, rtol=1e-5)
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad.abs().max() > 0, name
            torch.testing.assert_close(grads[name], param.grad, atol=1e-5, rtol=1e-4)


def test_shared_prefix_falls_back_to_full_rows_without_a_cache():
    # Gradient checkpointing keeps no key/value cache in training: the prefix goes back in front of the rows.
    model = make_tiny_model(300, seed=4)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    prefix = list(range(10, 30))
    prompts, responses = [[*prefix, 40, 41], [*prefix, 50]], [[60, 61], [62]]
    full = pad_views(prompts, responses, 0)
    cut = pad_views([p[20:] for p in prompts], responses, 0)
    want, _ = view_logps(model, full["input_ids"], full["attention_mask"], full["labels"])
    got, _ = view_logps(model, cut["input_ids"], cut["attention_mask"], cut["labels"], prefix_ids=torch.tensor(prefix))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    got.sum().backward()  # the graph is intact
    assert model.model.embed_tokens.weight.grad.abs().sum() > 0


def test_capability_checks_read_the_model_inside_a_wrapper():
    """A wrapper forwarding ``(*args, **kwargs)`` (DataParallel here, DDP in a run) hides nothing: logits are kept for
    the response columns only, the prefix is shared and rows are packed, with the unwrapped model's values."""
    model = _lora_tiny(3)
    model.eval()
    wrapped = torch.nn.DataParallel(model)  # on CPU it calls the module itself
    assert unwrap_model(wrapped) is model and unwrap_model(model) is model
    assert supports_shared_prefix(wrapped) and supports_packing(wrapped)
    shapes = []
    model.get_base_model().register_forward_hook(lambda m, a, kw, out: shapes.append(
        (kw["input_ids"].shape[1], out.logits.shape[1], kw.get("cache") is not None)), with_kwargs=True)
    prefix = list(range(10, 30))
    batch = pad_views([[40, 41, 42], [50]], [[60, 61], [62, 63, 64]], 0)
    with torch.no_grad():
        want = view_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                          prefix_ids=torch.tensor(prefix), packed=True)[0]
        shapes.clear()
        got = view_logps(wrapped, batch["input_ids"], batch["attention_mask"], batch["labels"],
                         prefix_ids=torch.tensor(prefix), packed=True)[0]
    torch.testing.assert_close(got, want)
    # the prefix alone (20 columns, no cache, one logit column: they are not read), then the rows' 5 and 4 tokens
    # packed (5 columns wide) continuing from it: logits for the 4 columns that predict a response token (2-3 in one
    # packed row, 0-2 in the other)
    assert shapes == [(20, 1, False), (5, 4, True)]


def test_pack_rows_first_fit_decreasing_by_hand():
    # capacity 6: 5 opens bin 0, 4 opens bin 1, 3 opens bin 2, 2 joins bin 1 (room 2), 1 joins bin 0.
    assert pack_rows([3, 5, 1, 4, 2], 6) == [[1, 2], [3, 4], [0]]
    assert pack_rows([2, 2, 2], 6) == [[0, 1, 2]]
    with pytest.raises(ValueError, match="does not fit"):
        pack_rows([7], 6)


def test_packing_is_refused_for_sliding_window_attention():
    assert supports_packing(make_tiny_sliding_model(64, sliding_window=None))
    assert not supports_packing(make_tiny_sliding_model(64, sliding_window=8))


@pytest.mark.parametrize("prefix_len", [0, 12])
def test_packed_views_equal_padded_logps_and_lora_gradients(prefix_len):
    """Padding-free batches (packed rows, block-causal mask) give the padded batch's values and gradients."""
    vocab = 300
    model = _lora_tiny(1)
    prefix = torch.randint(5, vocab, (prefix_len,)).tolist()
    # lengths chosen so that two short rows share a packed row with a third left alone
    prompts = [torch.randint(5, vocab, (k,)).tolist() for k in (9, 2, 3, 1)]
    responses = [torch.randint(5, vocab, (k,)).tolist() for k in (6, 2, 1, 3)]
    batch = pad_views(prompts, responses, 0)
    batch["labels"][3, 2] = -100  # a masked response token stays 0 in both layouts

    def step(packed: bool):
        model.zero_grad()
        logps, hidden, log1mp = view_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                           return_hidden=True, complement=True, packed=packed,
                                           prefix_ids=torch.tensor(prefix) if prefix else None)
        (-logps.sum() - 0.3 * log1mp.sum()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return logps.detach(), hidden, log1mp.detach(), grads

    assert supports_packing(model)  # else the packed path would silently run padded
    padded, packed = step(False), step(True)
    assert packed[0][3, 2] == 0 and packed[0][1, 2:].eq(0).all()
    real = batch["attention_mask"][:, -batch["labels"].shape[1]:].bool()  # hidden states of padding are not read
    for a, b in zip(padded[:3], packed[:3]):
        assert a.shape == b.shape
        torch.testing.assert_close(a[real], b[real], atol=1e-5, rtol=1e-5)
    for name in padded[3]:
        assert padded[3][name].abs().max() > 0, name
        torch.testing.assert_close(padded[3][name], packed[3][name], atol=1e-5, rtol=1e-4)
