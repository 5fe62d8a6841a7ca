"""TRL's SFTTrainer on an `nlft weights` file: one step equals one step of NLFTTrainer with cached views."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from support import LORA, make_tiny_model, sample_records
from trl import SFTConfig

from nlft import NLFTConfig, NLFTTrainer
from nlft.integrations.trl import NLFTWeightsTrainer, WeightsCollator, weighted_token_loss, weights_rows
from nlft.train.weights import weights_config, write_weights

# One optimizer step of plain SGD with learning rate 1 and no clipping: the update is minus the gradient.
SGD_STEP = dict(max_steps=1, per_device_train_batch_size=4, optim="sgd", learning_rate=1.0,
                lr_scheduler_type="constant", max_grad_norm=0.0, weight_decay=0.0, report_to="none",
                save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0, data_seed=0, logging_steps=1)
# r0 = 1 and p0_incorrect = 0 make the random model flag erroneous tokens, so unlikelihood is exercised.
FLAGGING = dict(r0=1.0, p0_incorrect=0.0)


def lora_model(vocab_size: int):
    """The tiny Llama with LoRA on its MLP projections, B matrices nonzero so that every LoRA matrix gets a gradient
    (and the initial model is not the base model)."""
    model = get_peft_model(make_tiny_model(vocab_size), LoraConfig(**LORA, init_lora_weights="gaussian"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)
    return model


def lora_state(model):
    return {k.removeprefix("base_model.model."): v.detach().clone() for k, v in model.named_parameters()
            if "lora_" in k}


@pytest.mark.parametrize("preset", ["paper", "robust"])
def test_one_step_equals_nlft_trainer_with_cached_views(tmp_path, tokenizer, preset):
    records = sample_records()
    torch.manual_seed(0)
    model_a = lora_model(len(tokenizer))
    torch.manual_seed(0)
    model_b = lora_model(len(tokenizer))
    start = lora_state(model_a)
    for key, value in lora_state(model_b).items():
        assert torch.equal(start[key], value)

    args = NLFTConfig.from_preset(preset, output_dir=str(tmp_path / "nlft"), view_probs="cached",
                                  error_reference="initial", **FLAGGING, **SGD_STEP)
    nlft = NLFTTrainer(model_a, args, train_dataset=records, processing_class=tokenizer)
    nlft.train()

    path = tmp_path / "weights.jsonl"
    result = write_weights(records, path, tokenizer=tokenizer, model=model_b, model_name="tiny",
                           config=weights_config(preset, **FLAGGING), progress=False)
    assert any("unlikelihood" in row["loss"] for row in result.rows)
    sft = NLFTWeightsTrainer(model_b, SFTConfig(output_dir=str(tmp_path / "trl"), bf16=False,
                                                gradient_checkpointing=False, **SGD_STEP),
                             train_dataset=str(path), processing_class=tokenizer)
    sft.train()

    assert sft.state.log_history[0]["loss"] == pytest.approx(nlft.state.log_history[0]["loss"], rel=1e-5)
    after_a, after_b = lora_state(model_a), lora_state(model_b)
    assert after_a.keys() == after_b.keys()
    for key in after_a:
        assert not torch.equal(after_a[key], start[key]), key  # the step moved every LoRA matrix
        torch.testing.assert_close(after_b[key] - start[key], after_a[key] - start[key], rtol=1e-4, atol=1e-7)


def test_loss_is_likelihood_and_unlikelihood_over_response_tokens():
    """Two rows, vocabulary 2, uniform logits (P = 1/2 everywhere): prompt tokens take no loss.

    Row 0: prompt [0], response [1, 0] with weights 2 and 1, likelihood: 2 log 2 + log 2.
    Row 1: prompt [1, 1], response [0] with weight 3, unlikelihood: 3 * -log(1 - 1/2) = 3 log 2.
    Sum 6 log 2 over 3 response tokens: 2 log 2.
    """
    rows = [{"input_ids": [0, 1, 0], "labels": [-100, 1, 0], "token_weights": [0.0, 2.0, 1.0],
             "unlikelihood": [False, False, False]},
            {"input_ids": [1, 1, 0], "labels": [-100, -100, 0], "token_weights": [0.0, 0.0, 3.0],
             "unlikelihood": [False, False, True]}]
    batch = WeightsCollator(pad_token_id=0)(rows)
    logits = torch.zeros(2, 3, 2, requires_grad=True)
    loss = weighted_token_loss(logits, batch["labels"], batch["token_weights"], batch["unlikelihood"])
    assert loss.item() == pytest.approx(2 * torch.log(torch.tensor(2.0)).item())
    # with the accumulated batch's count given, the sum is divided by it instead
    loss6 = weighted_token_loss(logits, batch["labels"], batch["token_weights"], batch["unlikelihood"], 6)
    assert loss6.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_rows_are_whole_sequences_with_the_prompt_masked(tmp_path, tokenizer):
    path = tmp_path / "w.jsonl"
    result = write_weights(sample_records(), path, tokenizer=tokenizer, model=make_tiny_model(len(tokenizer)),
                           model_name="tiny", config=weights_config(**FLAGGING), progress=False)
    for row, seq in zip(result.rows, weights_rows(path)):
        n = len(row["prompt_ids"])
        assert seq["input_ids"] == row["prompt_ids"] + row["response_ids"]
        assert seq["labels"][:n] == [-100] * n and seq["labels"][n:] == row["response_ids"]
        assert seq["token_weights"][n:] == row["scales"] and not any(seq["unlikelihood"][:n])
        assert [u for u in seq["unlikelihood"][n:]] == [loss == "unlikelihood" for loss in row["loss"]]
