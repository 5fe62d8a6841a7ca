"""A whole NLFTTrainer step against a naive per-token reference written from the paper's equations.

``tests/naive_nlft.py`` shares no code with the trainer (no ``nlft.method``, no collator): rows run
alone through a float64 full softmax, and every token's class, scale and loss term come from a
Python loop. The step's loss and LoRA gradients must equal it with every branch of the method active
(saliency, sub-saliency, irrelevant; erroneous, near-error, irrelevant and entirely wrong outputs),
under each rule for the irrelevant tokens of incorrect outputs, with the options (initial error
reference, KL anchor, class balance, unlikelihood weight, extra NLL, multiplier), both phrase rules,
and with the shared prefix and padding-free rows on and off.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from naive_nlft import naive_step
from support import make_tiny_model, sample_records

from nlft.method.params import settings_fields
from nlft.train.config import NLFTConfig
from nlft.train.trainer import NLFTTrainer

CASES = {
    # the paper's method: irrelevant tokens of incorrect outputs get 0 (max_error_fraction not read)
    "paper": {"irrelevant_incorrect": "zero", "phrase_rule": "cosine"},
    # the reference code's sqrt(P_std) likelihood, one incorrect output above max_error_fraction, one below
    "reference": {"irrelevant_incorrect": "reference", "phrase_rule": "cosine", "max_error_fraction": "split"},
    # the robust preset and every option on top of it
    "options": {"irrelevant_incorrect": "likelihood", "error_reference": "initial", "kl_coef": 0.5,
                "class_balance": True, "unlikelihood_weight": 1.5, "nll_coef": 0.3, "loss_multiplier": 2.0,
                "phrase_rule": "word", "max_error_fraction": "split"},
}


def _model(tokenizer):
    from peft import LoraConfig, get_peft_model

    model = make_tiny_model(len(tokenizer), seed=7)
    torch.manual_seed(7)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["gate_proj", "up_proj", "down_proj"],
                      init_lora_weights=False)  # random A and B: every LoRA weight gets a gradient
    return get_peft_model(model, lora)


def _grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize(("share_prefix", "padding_free"), [(True, True), (True, False), (False, True),
                                                            (False, False)])
@pytest.mark.parametrize("case", list(CASES))
def test_trainer_step_equals_the_naive_per_token_reference(tokenizer, tmp_path, case, share_prefix, padding_free):
    settings = {"r0": 1.0, "p0_incorrect": 0.0, "p0_correct": 1.0 / len(tokenizer), "phrase_threshold": 0.0,
                "max_phrase_span": 2, **CASES[case]}
    model = _model(tokenizer)
    records = sample_records()
    initial = copy.deepcopy(model).eval()
    args = NLFTConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, share_prefix=share_prefix,
                      padding_free=padding_free, **{**settings, "max_error_fraction": 1.0})
    trainer = NLFTTrainer(model, args=args, train_dataset=records, processing_class=tokenizer)
    rows = [trainer.train_dataset[i] for i in range(4)]
    if args.needs_initial_logps:
        trainer.fill_initial_logps()  # at the initial weights; then the model moves away from them
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.add_(0.3 * torch.randn_like(p))
    resolved = {f.name: getattr(args, f.name) for f in settings_fields()}
    if settings.get("max_error_fraction") == "split":  # between the two incorrect outputs' erroneous shares
        with torch.no_grad():
            _, counts = naive_step(model, rows, resolved, initial_model=initial, training_rows=rows)
        low, high = sorted(counts["error_shares"])
        assert low < high
        args.max_error_fraction = resolved["max_error_fraction"] = (low + high) / 2
    batch = trainer.data_collator(rows)
    assert ("prefix_ids" in batch) == share_prefix
    model.train()
    model.zero_grad(set_to_none=True)
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    grads = _grads(model)

    expected, counts = naive_step(model, rows, resolved, initial_model=initial, training_rows=rows)
    expected.backward()
    expected_grads = _grads(model)

    # every branch the case names contributed
    for key in ("saliency", "sub_saliency", "irrelevant_correct", "erroneous", "near_error", "irrelevant_incorrect"):
        assert counts[key] > 0, key
    if settings["irrelevant_incorrect"] != "zero":
        assert counts["entirely_wrong"] == 1 and counts["trained_irrelevant_incorrect"] > 0
    assert loss.item() > 0
    torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-5, atol=1e-7)
    assert grads.keys() == expected_grads.keys() and len(grads) == 2 * 3 * 2  # A, B x 3 MLP x 2 layers
    for name in grads:
        assert grads[name].abs().max() > 0, name
        scale = float(expected_grads[name].abs().max())
        torch.testing.assert_close(grads[name], expected_grads[name], rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_the_naive_reference_reads_every_setting():
    """A setting added to the method must be read by the reference too (or the comparison above misses it)."""
    import inspect

    import naive_nlft

    source = inspect.getsource(naive_nlft)
    unread = [f.name for f in settings_fields() if f'"{f.name}"' not in source]
    # settings of when and how the views are computed, not of the loss of a step: the trainer's own tests
    assert sorted(unread) == sorted(["view_probs", "view_batch_size", "share_prefix", "padding_free", "cut_threshold",
                                     "cut_normalisation"]), unread
    assert dataclasses.is_dataclass(NLFTConfig)
