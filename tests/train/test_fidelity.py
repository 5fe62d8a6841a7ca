"""Method fidelity: X_base is the generation prompt, prompts and responses are joined one way, CUT as
published, a stable unlikelihood term, the "entirely wrong" rule, and the robust options."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
from peft import LoraConfig
from support import LORA, make_tiny_model, sample_records

from nlft import NLFTConfig, NLFTTrainer
from nlft.method.logps import selective_log_softmax, view_logps
from nlft.method.loss import cut_loss, kl_penalty, nlft_loss
from nlft.method.scales import class_balance_weights, incorrect_token_scales
from nlft.tasks.prompts import (
    BASE_TEMPLATE,
    JUDGE_VIEW,
    SOLVE_TEMPLATE,
    STANDARD_VIEW,
    apply_chat,
    prompt_ids,
    render,
    view_text,
)
from nlft.train.views import generation_prompt, tokenize_record
from nlft.utils.files import DataError

CUSTOM = "Work it out, then write '#### <number>'.\nProblem: {question}\nAnswer:"


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), report_to="none", save_strategy="no", use_cpu=True,
                disable_tqdm=True, seed=0, data_seed=0)
    return NLFTConfig(**{**base, **kw})


def _with_template(rows, text, **extra):
    sha = hashlib.sha256(text.encode()).hexdigest()
    return [{**r, "provenance": {"template": {"name": "custom", "sha256": sha, "text": text, **extra}}} for r in rows]


# ---- 1. X_base is the prompt the outputs were generated with ----------------------------------------


def test_training_prompt_is_the_generation_prompt(tmp_path, tokenizer):
    rows = _with_template(sample_records(), CUSTOM)
    trainer = NLFTTrainer(make_tiny_model(len(tokenizer)), _args(tmp_path, max_steps=1), train_dataset=rows,
                          processing_class=tokenizer)
    assert trainer.args.base_template == CUSTOM
    row, tok = rows[2], trainer.train_dataset[2]
    fields = {"question": row["question"], "reference": row["reference"], "judgment": row["judgment"]}
    assert tok["base_prompt_ids"] == prompt_ids(tokenizer, render(CUSTOM, **fields))
    # the measurement views are the same prompt with the standard answer / judgment after the question
    std_text = render(CUSTOM, question=row["question"] + render(STANDARD_VIEW, **fields))
    judge_text = render(CUSTOM, question=row["question"] + render(JUDGE_VIEW, **fields))
    assert tok["std_prompt_ids"] == prompt_ids(tokenizer, std_text)
    assert tok["judge_prompt_ids"] == prompt_ids(tokenizer, judge_text)
    assert std_text.startswith("Work it out") and std_text.endswith(row["reference"] + "\nAnswer:")


def test_mixed_generation_prompts_are_refused_unless_set(tmp_path, tokenizer):
    rows = _with_template(sample_records()[:2], CUSTOM) + _with_template(sample_records()[2:], SOLVE_TEMPLATE)
    with pytest.raises(DataError, match="different prompts") as err:
        NLFTTrainer(make_tiny_model(len(tokenizer)), _args(tmp_path), train_dataset=rows, processing_class=tokenizer)
    assert "line 3" in str(err.value)
    trainer = NLFTTrainer(make_tiny_model(len(tokenizer)), _args(tmp_path, base_template=BASE_TEMPLATE),
                          train_dataset=rows, processing_class=tokenizer)
    assert trainer.args.base_template == BASE_TEMPLATE


def test_old_provenance_without_text_resolves_built_in_templates():
    sha = hashlib.sha256(SOLVE_TEMPLATE.encode()).hexdigest()
    rows = [{"provenance": {"template": {"name": "paper-A.2-solve", "sha256": sha}}}]
    assert generation_prompt(rows) == (SOLVE_TEMPLATE, None)
    assert generation_prompt([{"question": "q"}]) == (None, None)
    with pytest.raises(DataError, match="whose text the file does not hold"):
        generation_prompt([{"provenance": {"template": {"name": "mine.txt", "sha256": "ab" * 32}}}], source="f.jsonl")


def test_generation_without_chat_template_trains_without_it(tmp_path, tokenizer):
    rows = _with_template(sample_records(), CUSTOM, chat_template=False)
    trainer = NLFTTrainer(make_tiny_model(len(tokenizer)), _args(tmp_path), train_dataset=rows,
                          processing_class=tokenizer)
    assert trainer.args.use_chat_template is False
    text = tokenizer.decode(trainer.train_dataset[0]["base_prompt_ids"])
    assert "<|im_start|>" not in text and text.endswith("Answer:\n")


# ---- 2. one way to join prompt and response, also without a chat template ---------------------------


def test_plain_prompts_end_with_a_response_cue(plain_tokenizer):
    base = apply_chat(plain_tokenizer, render(BASE_TEMPLATE, question="What is 2 + 3?"))
    assert base.endswith("Question: What is 2 + 3?\nAnswer:\n")
    solve = apply_chat(plain_tokenizer, render(SOLVE_TEMPLATE, question="What is 2 + 3?"))
    assert solve.endswith("Question: What is 2 + 3?\nAnswer:\n") and not solve.endswith("Answer:\nAnswer:\n")
    # X_standard: the response follows the cue, never the standard answer itself
    std = apply_chat(plain_tokenizer, view_text(BASE_TEMPLATE, STANDARD_VIEW, question="Q?", reference="R #### 5",
                                                judgment=""))
    assert std.endswith("Standard answer:\nR #### 5\nAnswer:\n")


def test_generation_training_and_evaluation_see_the_same_plain_prompt(plain_tokenizer):
    """The ids the model is fed when generating equal X_base's ids in training, for a model without chat template."""
    from nlft.data.generation import generate_hf_with_counts

    model = make_tiny_model(len(plain_tokenizer))
    question = "Tom has 3 apples and buys 4 more. How many apples does he have?"
    fed = []
    hook = model.register_forward_hook(lambda m, a, kw, o: fed.append(kw["input_ids"][0].tolist()), with_kwargs=True)
    generate_hf_with_counts(model, plain_tokenizer, [render(BASE_TEMPLATE, question=question)], max_new_tokens=1,
                            chat=False, progress=False)
    hook.remove()
    row = {"question": question, "reference": "7", "output": "3 + 4 = 7\n#### 7", "correct": True, "judgment": None}
    tok = tokenize_record(row, plain_tokenizer, base_template=BASE_TEMPLATE, use_chat_template=False, views=())
    assert fed[0] == tok["base_prompt_ids"]
    assert plain_tokenizer.decode(tok["base_prompt_ids"]).endswith("\nAnswer:\n")
    # a plain prompt gets the tokenizer's own special tokens (a chat template writes its own)
    assert tok["base_prompt_ids"] == plain_tokenizer(render(BASE_TEMPLATE, question=question) + "\nAnswer:\n")[
        "input_ids"]


def test_chat_prompts_are_one_user_turn(tokenizer):
    text = apply_chat(tokenizer, render(BASE_TEMPLATE, question="Q?"))
    assert text.rstrip().endswith("<|im_start|>assistant")


# ---- 3. CUT as published ------------------------------------------------------------------------------


def test_cut_loss_by_hand():
    """Row 0 correct, one token (P = .1); row 1 incorrect, P_base = (.2, .5), P_judge = (.4, .5), w = 2, threshold 1.1.

    Row 1, token 0: ratio 2 > 1.1, so 1/2 (2 * -log .8 - log .4) = 0.681289;
    row 1, token 1: ratio 1, so 1/2 (-log .5 - log .5) = 0.693147; row 0: -log .1 = 2.302585.
    Per example (CUT's code): row means 2.302585 and 0.687218, L = (2.302585 + 0.687218) / 2 = 1.494902.
    Per token: L = (2.302585 + 0.681289 + 0.693147) / 3 = 1.225674.
    """
    mask = torch.tensor([[True, False], [True, True]])
    row0 = -math.log(0.1)
    row1 = [0.5 * (-2 * math.log(0.8) - math.log(0.4)), 0.5 * (-math.log(0.5) - math.log(0.5))]
    for per_example, expected, d_row0 in ((True, (row0 + sum(row1) / 2) / 2, -0.5),
                                          (False, (row0 + sum(row1)) / 3, -1 / 3)):
        logps = torch.log(torch.tensor([[0.1, 0.7], [0.2, 0.5]])).requires_grad_()
        judge = torch.log(torch.tensor([[0.9, 0.9], [0.4, 0.5]])).requires_grad_()
        log1mp = torch.log1p(-logps.exp())
        loss, selected = cut_loss(logps, log1mp, judge, torch.tensor([True, False]), mask, threshold=1.1,
                                  weight_unlike=2.0, per_example=per_example)
        assert loss.item() == pytest.approx(expected, rel=1e-6)
        assert selected.tolist() == [[False, False], [True, False]]
        loss.backward()
        assert logps.grad[0].tolist() == pytest.approx([d_row0, 0.0])
        # the judgment view of the incorrect row is trained with likelihood; the correct row has no judge term
        d_judge = -0.5 / 2 / 2 if per_example else -0.5 / 3
        torch.testing.assert_close(judge.grad, torch.tensor([[0.0, 0.0], [d_judge, d_judge]]))
    assert abs(1.494902 - 1.225674) > 0.2  # the two averages differ when outputs differ in length


def test_cut_trains_unflagged_tokens_and_the_judgment_view(tmp_path, tokenizer):
    """With nothing flagged, CUT's loss is 1/2 (NLL under X_base + NLL under X_judge) over incorrect rows."""
    rows = [r for r in sample_records() if not r["correct"]]
    model = make_tiny_model(len(tokenizer))
    trainer = NLFTTrainer(model, _args(tmp_path, max_steps=1, loss_type="cut", cut_threshold=1e9,
                                       base_template=BASE_TEMPLATE, per_device_train_batch_size=2),
                          train_dataset=rows, processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    with torch.no_grad():
        base, _ = view_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                             prefix_ids=batch.get("prefix_ids"))
        judge, _ = view_logps(model, batch["view_input_ids"], batch["view_attention_mask"], batch["view_labels"],
                             prefix_ids=batch.get("prefix_ids"))
    mask = batch["labels"] != -100
    per_token = 0.5 * (-base - judge) * mask
    assert mask.sum(-1).tolist()[0] != mask.sum(-1).tolist()[1]  # outputs of different lengths
    model.eval()  # no dropout in the tiny model; the same numbers as in training mode
    loss = trainer.compute_loss(model, batch)  # CUT's code: the mean over the outputs of their token means
    assert loss.item() == pytest.approx((per_token.sum(-1) / mask.sum(-1)).mean().item(), rel=1e-5) and loss.item() > 0
    trainer.args.cut_normalisation = "token"  # every token weighs the same
    assert trainer.compute_loss(model, batch).item() == pytest.approx((per_token.sum() / mask.sum()).item(), rel=1e-5)


# ---- 4. unlikelihood without a dead zone --------------------------------------------------------------


def test_unlikelihood_gradient_is_finite_and_nonzero_near_one():
    p = 1 - 1e-7
    logits = torch.tensor([[[math.log(p / (1 - p)), 0.0]]], requires_grad=True)
    logp, log1mp = selective_log_softmax(logits, torch.tensor([[0]]), complement=True)
    assert log1mp.item() == pytest.approx(math.log(1e-7), rel=1e-4)
    loss = nlft_loss(logp, torch.ones(1, 1), torch.ones(1, 1, dtype=torch.bool), torch.ones(1, 1, dtype=torch.bool),
                     log1mp=log1mp)
    loss.backward()
    grad = logits.grad[0, 0, 0].item()
    # d/da of -log(1 - sigmoid(a)) = sigmoid(a) = p
    assert math.isfinite(grad) and grad == pytest.approx(p, rel=1e-4)


def test_view_logps_complement_matches_the_definition(tiny_model, tokenizer, records):
    from nlft.method.logps import pad_views

    toks = [tokenize_record(r, tokenizer, base_template=BASE_TEMPLATE, views=()) for r in records]
    batch = pad_views([t["base_prompt_ids"] for t in toks], [t["response_ids"] for t in toks], 0)
    with torch.no_grad():
        logps, _, log1mp = view_logps(tiny_model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                      complement=True)
    mask = batch["labels"] != -100
    torch.testing.assert_close(log1mp[mask], torch.log1p(-logps[mask].exp()), rtol=1e-4, atol=1e-6)


# ---- 5. the "entirely wrong" rule ---------------------------------------------------------------------


def test_one_flagged_token_in_a_short_output_is_not_entirely_wrong():
    """One erroneous token in 12 (8%): the reference code's 6% rule would zero the other 11; the default keeps them."""
    p_base, p_std, p_judge = torch.full((12,), 0.2), torch.full((12,), 0.64), torch.full((12,), 0.2)
    p_judge[5], p_base[5], p_std[5] = 0.9, 0.1, 0.1
    scales, err = incorrect_token_scales(p_base, p_std, p_judge, irrelevant="reference")
    assert err.sum().item() == 1 and scales[0].item() == pytest.approx(0.8)
    scales, _ = incorrect_token_scales(p_base, p_std, p_judge, irrelevant="likelihood")
    assert scales[0].item() == 1.0
    assert NLFTConfig(output_dir="x", report_to="none").max_error_fraction == 0.5
    # more than half of the output flagged: entirely wrong, nothing of it is trained with likelihood
    p_judge[:7], p_base[:7], p_std[:7] = 0.9, 0.1, 0.1
    scales, err = incorrect_token_scales(p_base, p_std, p_judge, irrelevant="likelihood")
    assert err.sum().item() == 7 and scales[~err].abs().sum().item() == 0.0


# ---- the robust options -------------------------------------------------------------------------------


def test_class_balance_weights_by_hand():
    w_c, w_i = class_balance_weights(30, 70)
    assert (w_c, w_i) == pytest.approx((100 / 60, 100 / 140))
    assert 30 * w_c == pytest.approx(70 * w_i)  # each class carries half of the total weight
    assert class_balance_weights(0, 10) == (1.0, 1.0)


def test_kl_penalty_by_hand():
    """cur = log .5, ref = log .25: delta = log .5, k3 = .5 - log .5 - 1 = 0.193147; d/dcur = 1 - e^delta = .5."""
    cur = torch.tensor([math.log(0.5), math.log(0.3)], requires_grad=True)
    ref = torch.tensor([math.log(0.25), math.log(0.3)])
    kl = kl_penalty(cur, ref)
    assert kl[0].item() == pytest.approx(0.5 - math.log(0.5) - 1, rel=1e-6) and kl[1].item() == pytest.approx(0.0)
    kl.sum().backward()
    assert cur.grad.tolist() == pytest.approx([0.5, 0.0], abs=1e-6)


def test_presets_set_the_documented_options():
    """paper = the defaults = the published method; robust = what docs/method.md and docs/study.md name."""
    names = ("irrelevant_incorrect", "error_reference", "kl_coef", "class_balance", "unlikelihood_weight")
    paper = NLFTConfig.from_preset("paper", output_dir="x", report_to="none")
    default = NLFTConfig(output_dir="x", report_to="none")
    assert [getattr(paper, n) for n in names] == [getattr(default, n) for n in names] \
        == ["zero", "current", 0.0, False, 1.0]
    robust = NLFTConfig.from_preset("robust", output_dir="x", report_to="none")
    assert [getattr(robust, n) for n in names] == ["likelihood", "initial", 0.0, False, 1.0]
    robust = NLFTConfig.from_preset("robust", output_dir="x", report_to="none", kl_coef=0.3)
    assert robust.irrelevant_incorrect == "likelihood" and robust.kl_coef == 0.3 and robust.needs_initial_logps
    with pytest.raises(ValueError, match="unknown preset"):
        NLFTConfig.from_preset("fast", output_dir="x")
    with pytest.raises(ValueError, match="dynamic"):
        NLFTConfig(output_dir="x", loss_type="cut", view_probs="cached")


def test_initial_logps_are_the_first_step_logps_and_survive_resume(tmp_path, tokenizer):
    """'initial' error reference and the KL anchor read log P_base of the model before any step."""
    args = _args(tmp_path, max_steps=2, save_strategy="steps", save_steps=1, learning_rate=1e-2,
                 error_reference="initial", kl_coef=0.5, irrelevant_incorrect="likelihood", r0=1.0, p0_incorrect=0.0,
                 base_template=BASE_TEMPLATE)
    torch.manual_seed(0)
    model = make_tiny_model(len(tokenizer))
    trainer = NLFTTrainer(model, args, train_dataset=sample_records(), processing_class=tokenizer,
                          peft_config=LoraConfig(**LORA))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    with torch.no_grad():
        before, _ = view_logps(trainer.model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                               prefix_ids=batch.get("prefix_ids"))
    trainer.train()
    torch.testing.assert_close(trainer._initial_logps[batch["row_idx"], : before.shape[1]], before)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert all(math.isfinite(v) for v in losses)
    assert (tmp_path / "out" / "checkpoint-1" / "initial_logps.pt").exists()
    saved = torch.load(tmp_path / "out" / "checkpoint-1" / "initial_logps.pt", weights_only=True)
    torch.testing.assert_close(saved, trainer._initial_logps)


def test_the_paper_preset_excludes_an_entirely_wrong_output():
    """Paper section 6.1 excludes an entirely wrong output from training. With irrelevant_incorrect="zero" the
    threshold was not read, so an output with 7 of 12 tokens flagged still had unlikelihood on all 7; now every token
    of it is 0 (under every rule), and an output at or under the threshold keeps its erroneous tokens' scales."""
    p_base, p_std, p_judge = torch.full((12,), 0.2), torch.full((12,), 0.64), torch.full((12,), 0.2)
    p_judge[:7], p_base[:7], p_std[:7] = 0.9, 0.1, 0.1
    for rule in ("zero", "reference", "likelihood"):
        scales, err = incorrect_token_scales(p_base, p_std, p_judge, irrelevant=rule)
        assert err.sum().item() == 7 and scales.abs().sum().item() == 0.0
    p_judge[1:7], p_base[1:7], p_std[1:7] = 0.2, 0.2, 0.64  # one flagged token in 12: kept
    scales, err = incorrect_token_scales(p_base, p_std, p_judge, irrelevant="zero")
    assert err.nonzero().flatten().tolist() == [0] and scales[0].item() == pytest.approx(2 / (1 + math.exp(-(9 - 1.5))))
