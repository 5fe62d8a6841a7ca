"""NLFTTrainer on a tiny random model: real steps, gradient accumulation, bad input, logging."""

from __future__ import annotations

import math

import pytest
import torch
from peft import LoraConfig
from support import LORA, make_tiny_model, make_tiny_sliding_model, sample_records

from nlft import NLFTConfig, NLFTTrainer
from nlft.tasks.prompts import BASE_TEMPLATE
from nlft.utils.files import DataError


def make_args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), report_to="none", save_strategy="no", use_cpu=True,
                disable_tqdm=True, seed=0, data_seed=0)
    base.update(kw)
    return NLFTConfig(**base)


def lora_state(model):
    return {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}


def test_lora_weights_change_and_losses_finite(tmp_path, tokenizer):
    trainer = NLFTTrainer(make_tiny_model(len(tokenizer)), make_args(tmp_path, max_steps=3, learning_rate=1e-2),
                          train_dataset=sample_records(), processing_class=tokenizer, peft_config=LoraConfig(**LORA))
    before = lora_state(trainer.model)
    trainer.train()
    after = lora_state(trainer.model)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("lora_B" in k for k in changed)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 3
    for h in logs:
        assert math.isfinite(h["loss"]) and math.isfinite(h["nlft/nll"])
        for key in ("nlft/mean_scale", "nlft/weighted_nll", "nlft/saliency_share", "nlft/sub_saliency_share",
                    "nlft/erroneous_share"):
            assert key in h and math.isfinite(h[key])
    # a random model gives probabilities near 1/V: weighted NLL is far below the plain one
    assert logs[0]["nlft/weighted_nll"] < logs[0]["nlft/nll"]


@pytest.mark.parametrize("loss_type", ["nlft", "nll", "cut"])
def test_gradient_accumulation_1x4_equals_4x1(tmp_path, tokenizer, loss_type):
    """One optimizer step with plain SGD (lr 1, no clipping): the update is minus the gradient.

    Batch 4 x accumulation 1 and batch 1 x accumulation 4 see the same 4 rows, so with the loss
    normalised by the response tokens (CUT: the outputs) of the whole accumulated batch their updates are equal.
    r0=1, p0_incorrect=0 make the random model produce erroneous tokens, so unlikelihood is exercised.
    """
    updates = []
    for bsz, accum in ((4, 1), (1, 4)):
        args = make_args(tmp_path, max_steps=1, per_device_train_batch_size=bsz, gradient_accumulation_steps=accum,
                         optim="sgd", learning_rate=1.0, lr_scheduler_type="constant", max_grad_norm=0.0,
                         loss_type=loss_type, r0=1.0, p0_incorrect=0.0, weight_decay=0.0)
        torch.manual_seed(0)
        lora = LoraConfig(**LORA, init_lora_weights="gaussian")  # nonzero B so every LoRA matrix gets gradient
        trainer = NLFTTrainer(make_tiny_model(len(tokenizer)), args, train_dataset=sample_records(),
                              processing_class=tokenizer, peft_config=lora)
        trainer.train()
        updates.append(trainer.state.log_history[0]["loss"])
        updates.append(lora_state(trainer.model))
    loss_a, state_a, loss_b, state_b = updates
    assert loss_a == pytest.approx(loss_b, rel=1e-4)
    for k in state_a:
        torch.testing.assert_close(state_a[k], state_b[k], rtol=1e-4, atol=1e-7)


def test_erroneous_tokens_are_found_and_logged(tmp_path, tokenizer):
    args = make_args(tmp_path, max_steps=1, r0=1.0, p0_incorrect=0.0)
    trainer = NLFTTrainer(make_tiny_model(len(tokenizer)), args, train_dataset=sample_records(),
                          processing_class=tokenizer, peft_config=LoraConfig(**LORA))
    trainer.train()
    assert trainer.state.log_history[0]["nlft/erroneous_share"] > 0


@pytest.mark.parametrize("mode", ["cached", "per_epoch"])
def test_cached_view_probs_match_dynamic_on_first_step(tmp_path, tokenizer, mode):
    """Before any update the model is the initial one, so cached and dynamic give the same first loss."""
    losses = []
    for view_probs in ("dynamic", mode):
        args = make_args(tmp_path, max_steps=1, view_probs=view_probs, r0=1.0, p0_incorrect=0.0)
        torch.manual_seed(0)
        trainer = NLFTTrainer(make_tiny_model(len(tokenizer)), args, train_dataset=sample_records(),
                              processing_class=tokenizer, peft_config=LoraConfig(**LORA))
        trainer.train()
        losses.append(trainer.state.log_history[0]["loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def _eval_rows() -> list[dict]:
    """Three of the sample records at other indices than in training, so a row index read from a training
    cache would point at another record."""
    rows = sample_records()
    return [rows[3], rows[0], rows[2]]


def _loss_of(rows, args, tokenizer, model) -> float:
    """The loss of ``rows`` as one batch of training rows (their own views, initial log P_base of ``model``)."""
    trainer = NLFTTrainer(model, args, train_dataset=rows, processing_class=tokenizer)
    if args.needs_initial_logps:
        trainer.fill_initial_logps()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    model.eval()
    with torch.no_grad():
        return float(trainer.compute_loss(model, batch))


def test_evaluate_measures_the_eval_rows_themselves(tmp_path, tokenizer):
    """On an untrained model one eval loss whatever view_probs: the eval rows' own views, never the training
    rows' cache (before, 'cached' gave 0.0 before its cache existed and another row's loss after)."""
    losses = []
    for view_probs in ("dynamic", "cached", "per_epoch"):
        torch.manual_seed(0)
        trainer = NLFTTrainer(make_tiny_model(len(tokenizer)), make_args(tmp_path, view_probs=view_probs, r0=1.0,
                                                                         p0_incorrect=0.0),
                              train_dataset=sample_records(), eval_dataset=_eval_rows(), processing_class=tokenizer,
                              peft_config=LoraConfig(**LORA))
        losses.append(trainer.evaluate()["eval_loss"])
        if view_probs != "dynamic":
            trainer.fill_view_cache()  # the training rows' cache exists: evaluation still reads its own rows
            losses.append(trainer.evaluate()["eval_loss"])
    expected = _loss_of(_eval_rows(), make_args(tmp_path, r0=1.0, p0_incorrect=0.0), tokenizer, trainer.model)
    assert expected > 0
    assert losses == pytest.approx([expected] * 5, rel=1e-5)


def test_robust_evaluate_reads_the_eval_rows_initial_logps(tmp_path, tokenizer):
    """The robust preset's evaluate() works before training (it raised), reads the eval rows' own log P_base of the
    initial model, keeps them through training and a resumed run, and refuses rows it cannot know them for."""
    def robust(**kw):
        return NLFTConfig.from_preset("robust", output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True,
                                      disable_tqdm=True, seed=0, r0=1.0, p0_incorrect=0.0, kl_coef=0.5,
                                      learning_rate=1e-2, save_strategy="steps", save_steps=1, **kw)

    def trainer_of(args):
        torch.manual_seed(0)
        return NLFTTrainer(make_tiny_model(len(tokenizer)), args, train_dataset=sample_records(),
                           eval_dataset=_eval_rows(), processing_class=tokenizer, peft_config=LoraConfig(**LORA))

    trainer = trainer_of(robust(max_steps=2))
    before = trainer.evaluate()["eval_loss"]
    assert before == pytest.approx(_loss_of(_eval_rows(), robust(), tokenizer, trainer.model), rel=1e-5)
    initial = list(trainer.eval_dataset["initial_logps"])
    trainer.train()
    assert list(trainer.eval_dataset["initial_logps"]) == initial  # measured before the first step, not again
    assert math.isfinite(trainer.evaluate()["eval_loss"])
    with pytest.raises(ValueError, match="measured before the first training step"):
        trainer.evaluate(eval_dataset=sample_records()[:2])
    # a trainer that did not evaluate first measures them when training starts, and a resumed run reloads them
    fresh = trainer_of(robust(max_steps=2))
    fresh.train()
    flat = [v for row in initial for v in row]
    assert [v for row in fresh.eval_dataset["initial_logps"] for v in row] == pytest.approx(flat, rel=1e-6)
    resumed = trainer_of(robust(max_steps=3))
    resumed.train(resume_from_checkpoint=True)
    assert [v for row in resumed.eval_dataset["initial_logps"] for v in row] == pytest.approx(flat, rel=1e-6)


def test_word_and_no_phrase_rules_run(tmp_path, tokenizer):
    for rule in ("word", "none"):
        trainer = NLFTTrainer(make_tiny_model(len(tokenizer)), make_args(tmp_path, max_steps=1, phrase_rule=rule),
                              train_dataset=sample_records(), processing_class=tokenizer)
        trainer.train()
        assert math.isfinite(trainer.state.log_history[0]["loss"])


# ---- bad input: clear errors before training starts ----------------------------------------------

@pytest.mark.parametrize(
    ("change", "row", "field", "message"),
    [
        (lambda r: r[1].pop("reference"), 2, "reference", "missing field"),
        (lambda r: r[0].update(output="   "), 1, "output", "empty"),
        (lambda r: r[2].update(judgment=None), 3, "judgment", "needs a judgment"),
        (lambda r: r[3].update(correct="no"), 4, "correct", "true or false"),
        (lambda r: r[0].update(question=7), 1, "question", "expected a string"),
    ],
)
def test_bad_records_name_row_and_field(tmp_path, tokenizer, change, row, field, message):
    rows = sample_records()
    change(rows)
    with pytest.raises(DataError, match=message) as err:
        NLFTTrainer(make_tiny_model(len(tokenizer)), make_args(tmp_path), train_dataset=rows,
                    processing_class=tokenizer)
    assert f"line {row}" in str(err.value) and f"field '{field}'" in str(err.value)


def test_too_long_prompt_is_an_error_or_truncated(tmp_path, tokenizer):
    rows = sample_records()
    rows[1]["reference"] = "very long reference " * 200
    with pytest.raises(DataError, match="exceeds max_length=256") as err:
        NLFTTrainer(make_tiny_model(len(tokenizer)), make_args(tmp_path, max_length=256, base_template=BASE_TEMPLATE),
                    train_dataset=rows, processing_class=tokenizer)
    assert "line 2" in str(err.value) and "field 'reference'" in str(err.value)
    rows = sample_records()
    rows[0]["output"] = "and so on " * 100
    trainer = NLFTTrainer(make_tiny_model(len(tokenizer)), make_args(tmp_path, max_length=200, truncation="response",
                                                                     base_template=BASE_TEMPLATE),
                          train_dataset=rows, processing_class=tokenizer)
    assert max(trainer.train_dataset["length"]) <= 200


def test_config_rejects_bad_values(tmp_path):
    with pytest.raises(ValueError, match="view_probs"):
        make_args(tmp_path, view_probs="sometimes")
    with pytest.raises(ValueError, match="c2 must be smaller than c3"):
        make_args(tmp_path, c2=0.7, c3=0.6)


@pytest.mark.slow
def test_smollm2_lora_steps(tmp_path, smollm2_path, smollm2_tokenizer):
    """Real SmolLM2-135M-Instruct: a few LoRA steps change the adapter and log finite losses."""
    from nlft.utils.models import load_model

    args = make_args(tmp_path, max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3)
    trainer = NLFTTrainer(load_model(smollm2_path), args, train_dataset=sample_records(),
                          processing_class=smollm2_tokenizer,
                          peft_config=LoraConfig(r=16, lora_alpha=16, lora_dropout=0.05,
                                                 target_modules=["gate_proj", "up_proj", "down_proj"],
                                                 task_type="CAUSAL_LM"))
    before = lora_state(trainer.model)
    trainer.train()
    after = lora_state(trainer.model)
    assert any(not torch.equal(before[k], after[k]) for k in before if "lora_B" in k)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    # a real model is confident on much of a fluent answer: some saliency tokens appear
    assert max(h.get("nlft/saliency_share", 0.0) for h in logs) > 0


@pytest.mark.parametrize("arch", ["qwen2", "gpt2"])
def test_other_architectures(tmp_path, tokenizer, arch):
    """Qwen2 and GPT-2 style models (Conv1D projections, absolute positions) train with LoRA too."""
    from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    if arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
        lora = LoraConfig(**LORA)
    else:
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=4))
        lora = LoraConfig(r=8, lora_alpha=16, target_modules=["c_fc", "c_proj"], fan_in_fan_out=True,
                          task_type="CAUSAL_LM")
    trainer = NLFTTrainer(model, make_args(tmp_path, max_steps=2, learning_rate=1e-2), train_dataset=sample_records(),
                          processing_class=tokenizer, peft_config=lora)
    before = lora_state(trainer.model)
    trainer.train()
    after = lora_state(trainer.model)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)


def test_padding_free_is_on_by_default_and_off_with_a_notice_where_unsupported(tmp_path, tokenizer, capsys):
    assert NLFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[]).padding_free
    trainer = NLFTTrainer(make_tiny_model(len(tokenizer)), make_args(tmp_path), train_dataset=sample_records(),
                          processing_class=tokenizer)
    assert trainer.args.padding_free and "padding_free off" not in capsys.readouterr().err
    trainer = NLFTTrainer(make_tiny_sliding_model(len(tokenizer)), make_args(tmp_path), train_dataset=sample_records(),
                          processing_class=tokenizer)
    err = capsys.readouterr().err
    assert not trainer.args.padding_free
    assert "padding_free off: MistralForCausalLM" in err and "rows run padded" in err
    trainer.create_optimizer_and_scheduler(num_training_steps=1)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert torch.isfinite(trainer.compute_loss(trainer.model, batch))


def test_the_data_report_counts_token_classes_and_warns_when_incorrect_outputs_add_nothing(
        tmp_path, tiny_model, tokenizer, records, capsys):
    """Before the first step the trainer measures the data's token classes under the initial model: the counts add up
    to the response tokens, and with r0 so high that no token can be flagged the paper preset's incorrect outputs
    contribute nothing, which it says."""
    from nlft import NLFTConfig, NLFTTrainer

    args = NLFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, r0=1e9, max_steps=1)
    trainer = NLFTTrainer(tiny_model, args, train_dataset=records, processing_class=tokenizer)
    counts = trainer.report_token_classes()
    err = capsys.readouterr().err
    n_correct = sum(bool(r["correct"]) for r in records)
    assert counts["correct_outputs"] == n_correct and counts["incorrect_outputs"] == len(records) - n_correct
    tokens = sum(len(x) for x in trainer.train_dataset["response_ids"])
    assert sum(counts[k] for k in ("saliency", "sub_saliency", "irrelevant_correct", "erroneous", "near_error",
                                   "irrelevant_incorrect")) == tokens
    assert counts["erroneous"] == 0 and counts["incorrect_without_flag"] == counts["incorrect_outputs"]
    assert f"none of the {counts['incorrect_outputs']} incorrect outputs contributes to training" in err
    # with likelihood on the unflagged tokens they do contribute: no warning
    args = NLFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, r0=1e9,
                      irrelevant_incorrect="likelihood")
    NLFTTrainer(tiny_model, args, train_dataset=records, processing_class=tokenizer).report_token_classes()
    assert "warning" not in capsys.readouterr().err
