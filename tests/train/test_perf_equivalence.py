"""The lean NLFT step computes exactly what a naive, reference-style step computes.

The lean step (measurement views under no_grad, output head on response positions only, gathered
log-probabilities, optional chunking) must give the same loss and the same LoRA gradients as the
baseline of ``benchmarks/refstyle.py`` (all views stacked in one graph, float32 softmax over the full
vocabulary), on a tiny random Llama with dropout off.
"""

from __future__ import annotations

import sys

import pytest
import torch
from support import REPO, make_tiny_model, needs_gsm8k, sample_records

sys.path.insert(0, str(REPO / "benchmarks"))

from refstyle import RefStyleTrainer, stacked_view_logps

from nlft.method.logps import pad_views, selective_log_softmax, view_logps
from nlft.train.config import NLFTConfig
from nlft.train.trainer import NLFTCollator, NLFTTrainer, measure_views

# Thresholds loose enough that a random model has saliency, sub-saliency and erroneous tokens, so that
# every branch of the loss contributes to the comparison.
LOOSE = {"r0": 1.0, "p0_incorrect": 0.0, "irrelevant_incorrect": "reference",
         "max_error_fraction": 1.0, "phrase_threshold": 0.0, "max_phrase_span": 2}


def _lora_model(tokenizer, seed: int = 0):
    from peft import LoraConfig, get_peft_model

    model = make_tiny_model(len(tokenizer), seed=seed)
    torch.manual_seed(seed)
    # init_lora_weights=False: random A and B, so that every LoRA weight gets a non-zero gradient.
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["gate_proj", "up_proj", "down_proj"],
                      init_lora_weights=False)
    return get_peft_model(model, lora)


def _args(tmp_path, tokenizer, **kw) -> NLFTConfig:
    # p0_correct at the uniform probability 1/V of a random model: about half its tokens are saliency tokens
    loose = {**LOOSE, "p0_correct": 1.0 / len(tokenizer)}
    return NLFTConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, **{**loose, **kw})


def _loss_and_grads(trainer, batch):
    model = trainer.model
    model.zero_grad(set_to_none=True)
    model.train()
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


@pytest.mark.parametrize(("phrase_rule", "padding_free"), [("cosine", False), ("word", False), ("cosine", True)])
def test_lean_step_equals_reference_style_step(tokenizer, tmp_path, phrase_rule, padding_free):
    model = _lora_model(tokenizer)
    records = sample_records()
    args = _args(tmp_path, tokenizer, phrase_rule=phrase_rule, padding_free=padding_free)
    lean = NLFTTrainer(model, args=args, train_dataset=records, processing_class=tokenizer)
    ref = RefStyleTrainer(model, args=args, train_dataset=records, processing_class=tokenizer)
    batch = lean.data_collator([lean.train_dataset[i] for i in range(4)])
    assert "prefix_ids" in batch and "prefix_ids" not in ref.data_collator([ref.train_dataset[0]])  # shared vs full
    # the reference style stacks all three views of every row, a correct output's X_judge included
    ref_batch = ref.data_collator([ref.train_dataset[i] for i in range(4)])
    assert len(ref_batch["view_row"]) == 2 * 4 > len(batch["view_row"])

    loss_lean, grads_lean = _loss_and_grads(lean, batch)
    loss_ref, grads_ref = _loss_and_grads(ref, ref_batch)

    metrics = lean._metrics["train"]
    # Every branch of the loss is exercised: saliency, sub-saliency and erroneous tokens all exist.
    assert metrics["nlft/saliency_share"][-1] > 0
    assert metrics["nlft/sub_saliency_share"][-1] > 0
    assert metrics["nlft/erroneous_share"][-1] > 0
    assert loss_lean > 0
    torch.testing.assert_close(loss_lean, loss_ref, rtol=1e-5, atol=1e-7)
    assert grads_lean.keys() == grads_ref.keys() and len(grads_lean) == 2 * 3 * 2  # A, B x 3 MLP x 2 layers
    for name in grads_lean:
        assert grads_lean[name].abs().max() > 0, name
        # Sums in a different order differ by float rounding: tolerance relative to the gradient's scale.
        scale = float(grads_ref[name].abs().max())
        torch.testing.assert_close(grads_lean[name], grads_ref[name], rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_cut_step_with_padding_free_rows_equals_padded(tokenizer, tmp_path):
    """CUT's two forwards with gradients (X_base, X_judge) packed give the padded step's loss and gradients."""
    model = _lora_model(tokenizer, seed=3)
    records = sample_records()
    results = []
    for packed in (False, True):
        trainer = NLFTTrainer(model, args=_args(tmp_path, tokenizer, loss_type="cut", padding_free=packed),
                              train_dataset=records, processing_class=tokenizer)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        assert not bool(batch["correct"].all()) and "view_input_ids" in batch  # X_judge rows exist
        results.append(_loss_and_grads(trainer, batch))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert loss_a > 0
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-7)
    for name in grads_a:
        assert grads_a[name].abs().max() > 0, name
        scale = float(grads_a[name].abs().max())
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-5 * scale, msg=name)


@pytest.mark.parametrize("loss_type", ["nlft", "cut"])
def test_shared_prefix_runs_once_per_step(tokenizer, tmp_path, loss_type):
    """The measurement views, the base view and CUT's judgment view continue from one run of the prefix."""
    model = _lora_model(tokenizer, seed=2)
    trainer = NLFTTrainer(model, args=_args(tmp_path, tokenizer, loss_type=loss_type), train_dataset=sample_records(),
                          processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    assert "view_input_ids" in batch  # views to measure (NLFT) or to train on (CUT's X_judge)
    prefix_len = batch["prefix_ids"].numel()
    shapes: list[tuple[int, ...]] = []
    handle = model.get_input_embeddings().register_forward_pre_hook(lambda _m, a: shapes.append(tuple(a[0].shape)))
    try:
        loss, grads = _loss_and_grads(trainer, batch)
    finally:
        handle.remove()
    assert shapes.count((1, prefix_len)) == 1, shapes
    assert len(shapes) == 3  # the prefix, the views, the base rows
    assert loss > 0 and all(g.abs().max() > 0 for g in grads.values())


class FixedMaskDropout(torch.nn.Dropout):
    """Dropout whose mask is one fixed draw over the channels: the same at every position and every call, so a
    training forward is deterministic and a shared prefix can be compared with full rows exactly."""

    def __init__(self, width: int, seed: int) -> None:
        super().__init__(p=0.5)
        keep = torch.rand(width, generator=torch.Generator().manual_seed(seed)) > self.p
        self.register_buffer("mask", keep.float() / (1 - self.p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask if self.training else x


def _with_fixed_dropout(model):
    from peft.tuners.lora import LoraLayer

    for i, layer in enumerate(m for m in model.modules() if isinstance(m, LoraLayer)):
        layer.lora_dropout["default"] = FixedMaskDropout(layer.in_features, seed=i)
    return model


@pytest.mark.parametrize("loss_type", ["nlft", "cut"])
def test_shared_prefix_trains_with_the_models_dropout(tokenizer, tmp_path, loss_type):
    """With dropout on, the trained views continue from a prefix run in train mode, so the shared-prefix step
    equals the full rows' step (dropout made deterministic here: one fixed mask); the measurement views still
    see no dropout. Before, the prefix ran in eval mode for every view and the step differed from the full rows."""
    model = _with_fixed_dropout(_lora_model(tokenizer, seed=5))
    records = sample_records()
    results = []
    for share in (True, False):
        trainer = NLFTTrainer(model, args=_args(tmp_path, tokenizer, loss_type=loss_type, share_prefix=share),
                              train_dataset=records, processing_class=tokenizer)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        assert ("prefix_ids" in batch) == share
        results.append(_loss_and_grads(trainer, batch))
    (loss_a, grads_a), (loss_b, grads_b) = results
    model.eval()  # the same step without dropout differs: the masks matter
    assert abs(float(trainer.compute_loss(model, batch)) - float(loss_b)) > 1e-3
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-7)
    for name in grads_a:
        scale = float(grads_b[name].abs().max())
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-5 * scale, msg=name)


@pytest.mark.parametrize(("loss_type", "runs"), [("nlft", 2), ("cut", 1)])
def test_with_dropout_the_prefix_runs_in_train_mode_and_once_more_for_the_views(tokenizer, tmp_path, loss_type,
                                                                                   runs):
    """Real dropout: the trained views' prefix runs in train mode; NLFT's measurement views get a second, eval-mode
    run of it (CUT has none to measure)."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(make_tiny_model(len(tokenizer), seed=6),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["gate_proj", "up_proj"]))
    trainer = NLFTTrainer(model, args=_args(tmp_path, tokenizer, loss_type=loss_type), train_dataset=sample_records(),
                          processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    prefix_len = batch["prefix_ids"].numel()
    modes: list[bool] = []
    dropout = next(m for m in model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0)
    handle = dropout.register_forward_pre_hook(
        lambda m, a: modes.append(m.training) if a[0].shape[:2] == (1, prefix_len) else None)
    try:
        _loss_and_grads(trainer, batch)
    finally:
        handle.remove()
    assert modes == [True, False][:runs]


def test_measured_views_equal_stacked_full_softmax(tokenizer, tmp_path):
    """P_std and P_judge from the lean measurement pass equal those read off the stacked full-vocabulary pass."""
    model = _lora_model(tokenizer, seed=1)
    trainer = NLFTTrainer(model, args=_args(tmp_path, tokenizer), train_dataset=sample_records(),
                          processing_class=tokenizer)
    feats = [trainer.train_dataset[i] for i in range(4)]
    batch = trainer.data_collator(feats)
    assert batch["prefix_ids"].numel() >= 16  # chat header and instruction, run once (share_prefix)
    p_std, p_judge = measure_views(model, batch)
    full = NLFTCollator(tokenizer.pad_token_id)(feats)  # every view in full
    model.eval()
    with torch.no_grad():
        _, views, _ = stacked_view_logps(model, full)
    kinds, rows = batch["view_kind"], batch["view_row"]
    assert p_std is not None and p_judge is not None
    for v in range(views.shape[0]):
        mask = batch["view_labels"][v] != -100
        target = p_std if int(kinds[v]) == 0 else p_judge
        torch.testing.assert_close(target[rows[v]][mask], views[v].exp()[mask], rtol=1e-5, atol=1e-9)
    # Rows without a judge view (correct outputs 0 and 1) hold zeros.
    assert torch.equal(p_judge[:2], torch.zeros_like(p_judge[:2]))


def test_chunked_measurement_equals_one_pass(tokenizer, tmp_path):
    model = _lora_model(tokenizer, seed=2)
    trainer = NLFTTrainer(model, args=_args(tmp_path, tokenizer), train_dataset=sample_records(),
                          processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    whole = measure_views(model, batch)
    chunked = measure_views(model, batch, chunk_size=1)
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)


def test_padded_view_logps_equal_each_row_alone(tokenizer):
    """Left/right padding and logits_to_keep give each row the log-probs it has unpadded, full logits."""
    model = make_tiny_model(len(tokenizer), seed=3).eval()
    prompts = [[5, 17, 99], [7, 8, 9, 10, 11, 12], [300]]
    responses = [[40, 41, 42, 43], [50], [60, 61, 62]]
    batch = pad_views(prompts, responses, pad_token_id=2)
    with torch.no_grad():
        logps, _ = view_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        for i, (p, r) in enumerate(zip(prompts, responses)):
            ids = torch.tensor([p + r])
            full = model(input_ids=ids).logits[0, len(p) - 1 : -1].float().log_softmax(-1)
            expected = full.gather(-1, torch.tensor(r)[:, None]).squeeze(-1)
            torch.testing.assert_close(logps[i, : len(r)], expected, rtol=1e-5, atol=1e-5)
            assert torch.all(logps[i, len(r) :] == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_selective_log_softmax_equals_full_log_softmax(dtype):
    torch.manual_seed(0)
    logits = (torch.randn(3, 7, 50) * 4).to(dtype)
    index = torch.randint(0, 50, (3, 7))
    expected = logits.float().log_softmax(-1).gather(-1, index[..., None]).squeeze(-1)
    got = selective_log_softmax(logits, index)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_cached_views_equal_dynamic_before_any_update(tokenizer, tmp_path):
    """With the model unchanged, the cached view probabilities give the dynamic step's loss exactly."""
    model = _lora_model(tokenizer, seed=4)
    records = sample_records()
    dynamic = NLFTTrainer(model, args=_args(tmp_path / "d", tokenizer), train_dataset=records,
                          processing_class=tokenizer)
    cached = NLFTTrainer(model, args=_args(tmp_path / "c", tokenizer, view_probs="cached", view_batch_size=3),
                         train_dataset=records, processing_class=tokenizer)
    cached.fill_view_cache()
    idx = [3, 0, 2]
    loss_d, grads_d = _loss_and_grads(dynamic, dynamic.data_collator([dynamic.train_dataset[i] for i in idx]))
    loss_c, grads_c = _loss_and_grads(cached, cached.data_collator([cached.train_dataset[i] for i in idx]))
    torch.testing.assert_close(loss_d, loss_c, rtol=1e-5, atol=1e-7)
    for name in grads_d:
        scale = float(grads_d[name].abs().max())
        torch.testing.assert_close(grads_d[name], grads_c[name], rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_step_cost_summary_ratios_and_targets():
    """Hand-made timings: SFT is the faster of the two SFT steps, ratios and target checks follow from it."""
    import argparse

    from step_cost import summarise

    configs = ["sft_nll", "trl_sft", "nlft_dynamic", "refstyle"]
    step = {"sft_nll": 2.0, "trl_sft": 3.0, "nlft_dynamic": 3.4, "refstyle": 9.0}
    peak = {"sft_nll": 1000.0, "trl_sft": 1300.0, "nlft_dynamic": 1040.0, "refstyle": 2200.0}
    times = {(c, "mixed"): [step[c] + 1.0, step[c], step[c] - 0.5] for c in configs}
    memory = {(c, "mixed"): {"peak_mb": peak[c], "step_mb": peak[c] - 900.0} for c in configs}
    args = argparse.Namespace(kinds=["mixed"], configs=configs)
    report = summarise(times, memory, args, {})
    assert report["sft_step_s"] == 2.0 and report["per_kind"]["mixed"]["sft"]["from"] == "sft_nll"
    assert report["trl_sft_step_s"] == 3.0 and report["refstyle_peak_mb"] == 2200.0
    ratios = report["ratios"]["mixed"]
    assert ratios["nlft_dynamic_vs_sft_time"] == pytest.approx(1.7)  # 3.4 / 2.0
    assert ratios["nlft_dynamic_vs_sft_peak"] == pytest.approx(1.04)  # 1040 / 1000
    assert ratios["refstyle_vs_dynamic_time"] == pytest.approx(9.0 / 3.4)
    assert ratios["refstyle_vs_dynamic_step_mb"] == pytest.approx(1300.0 / 140.0)
    t = report["targets"]
    assert t["dynamic_time_mixed"]["ok"] and t["dynamic_peak_mixed"]["ok"] and t["refstyle_time_mixed"]["ok"]
    assert t["refstyle_peak_mixed"]["ok"] is True  # 2200 / 1040 = 2.12 >= 2
    assert t["dynamic_time_incorrect"]["ok"] is None  # not measured


def test_step_cost_long_prompt_keys_and_shared_targets():
    import argparse

    from step_cost import summarise

    configs = ["sft_nll", "sft_shared", "nlft_dynamic", "nlft_dynamic_shared"]
    step = {"sft_nll": 4.0, "sft_shared": 2.0, "nlft_dynamic": 8.0, "nlft_dynamic_shared": 3.2}
    peak = {"sft_nll": 1200.0, "sft_shared": 1000.0, "nlft_dynamic": 1300.0, "nlft_dynamic_shared": 1100.0}
    times = {(c, "mixed"): [step[c]] for c in configs}
    memory = {(c, "mixed"): {"peak_mb": peak[c], "step_mb": 0.0} for c in configs}
    report = summarise(times, memory, argparse.Namespace(kinds=["mixed"], configs=configs, long_prompt=True), {})
    assert (report["sft_naive_step_s"], report["sft_shared_step_s"]) == (4.0, 2.0)
    assert (report["nlft_dynamic_naive_step_s"], report["nlft_dynamic_shared_step_s"]) == (8.0, 3.2)
    assert report["nlft_dynamic_shared_peak_mb"] == 1100.0 and report["sft_naive_peak_mb"] == 1200.0
    t = report["targets"]
    naive = t["shared_dynamic_vs_sft_naive_time"]
    assert naive["value"] == pytest.approx(0.8) and naive["ok"]  # 3.2 / 4.0
    assert t["shared_dynamic_vs_sft_shared_time"]["value"] == pytest.approx(1.6)
    assert t["shared_dynamic_vs_sft_shared_time"]["ok"] is False  # 3.2 / 2.0 > 1.5
    assert t["shared_dynamic_vs_sft_shared_peak"]["ok"] is False  # 1100 / 1000 > 1.05


@needs_gsm8k
@pytest.mark.slow
def test_step_cost_bench_steps_every_configuration(smollm2_tokenizer, tmp_path):
    """Every benchmark configuration builds and takes real optimizer steps that change the LoRA weights
    (the workload is GSM8K outputs of 150-250 SmolLM2 tokens)."""
    tokenizer = smollm2_tokenizer
    from peft import get_peft_model
    from step_cost import CONFIGS, SHARED, Bench, batch_indices
    from workload import lora_config, realistic_records

    assert batch_indices("mixed", 3) == [0, 1, 3] and batch_indices("incorrect", 3, 2) == [3, 4]
    records = realistic_records(tokenizer, 6, correct_share=0.5)
    assert [r["correct"] for r in records] == [True] * 3 + [False] * 3
    assert all(r["judgment"] for r in records[3:])
    model = get_peft_model(make_tiny_model(len(tokenizer)), lora_config())
    lora_b = next(p for n, p in model.named_parameters() if "lora_B" in n)
    for config in CONFIGS:
        bench = Bench(config, model, tokenizer, records, 3, 1, str(tmp_path / config), False)
        before = lora_b.detach().clone()
        assert bench.step("mixed") > 0
        assert not torch.equal(before, lora_b.detach()), config
        shared = bench.batches["mixed"][0].get("prefix_ids")
        assert (shared is not None and len(shared) > 400) == (config in SHARED), config  # A.2's worked examples
    assert bench.batches["mixed"][0]["input_ids"].shape[0] == 3


@needs_gsm8k
@pytest.mark.slow
def test_step_cost_reports_a_step_that_does_not_fit(smollm2_path):
    """Under a memory limit the reference-style long-prompt step is a result ("error"), not a killed benchmark."""
    from step_cost import run_child

    cmd = [sys.executable, str(REPO / "benchmarks" / "step_cost.py"), "--child", "refstyle", "mixed",
           "--model", "smollm2", "--batch-size", "3", "--single-size", "1", "--threads", "1", "--prompt", "solve"]
    result = run_child(cmd, mem_limit_mb=4000)
    assert set(result) == {"error"} and "does not fit in 4000 MB" in result["error"]
