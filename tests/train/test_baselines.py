"""Baselines: SFT data from NLFT records (same tokens as NLFT's base view), the ReFT reward in TRL's interfaces."""

from __future__ import annotations

import json

import pytest
import torch
from support import make_tiny_model

from nlft.tasks.prompts import BASE_TEMPLATE
from nlft.train.baselines import (
    RuleRewardModel,
    make_ppo_trainer,
    ppo_available,
    reft_questions,
    reft_reward_func,
    sft_dataset,
    sft_examples,
)
from nlft.train.views import tokenize_record
from nlft.utils.files import DataError


def test_sft_examples_modes(records):
    outputs = sft_examples(records, "outputs")
    assert [e["completion"] for e in outputs] == [records[0]["output"], records[1]["output"]]
    reference = sft_examples([*records, records[0]], "reference")  # a repeated question counts once
    assert [e["completion"] for e in reference] == [r["reference"] for r in records]
    with pytest.raises(DataError, match="no output is marked correct"):
        sft_examples([r for r in records if not r["correct"]], "outputs", source="d.jsonl")
    with pytest.raises(ValueError, match="choose one of outputs, reference"):
        sft_examples(records, "gold")
    with pytest.raises(DataError, match=r"d\.jsonl, line 2, field 'output'"):
        sft_examples([records[0], {**records[1], "output": " "}], "outputs", source="d.jsonl")


def test_sft_tokens_are_nlft_base_view(records, tokenizer):
    """SFT sees exactly NLFT's X_base prompt and response tokens; the loss covers the response (+ EOS) only."""
    ds = sft_dataset(records, tokenizer, mode="outputs", base_template=BASE_TEMPLATE)
    assert len(ds) == 2
    for row, record in zip(ds, records[:2]):
        tok = tokenize_record(record, tokenizer, base_template=BASE_TEMPLATE, standard_template="",
                              judge_template="", views=())
        assert row["input_ids"] == tok["base_prompt_ids"] + tok["response_ids"]
        assert row["completion_mask"] == [0] * len(tok["base_prompt_ids"]) + [1] * len(tok["response_ids"])
        assert row["input_ids"][-1] == tokenizer.eos_token_id
    assert "<|im_start|>user" in tokenizer.decode(ds[0]["input_ids"])  # through the chat template


@pytest.mark.parametrize("chat", [None, False])
def test_every_library_entry_trains_under_the_records_generation_prompt(records, tokenizer, tmp_path, chat):
    """SFT, GRPO, SDFT and NLFTTrainer read the prompt (and the chat-template choice) from the records' provenance, and
    records without provenance train all three under the paper's solve prompt: one rule, not one default each."""
    from nlft import NLFTConfig, NLFTTrainer
    from nlft.tasks.prompts import BRIEF_TEMPLATE, SOLVE_TEMPLATE, apply_chat, plain_prompt, render
    from nlft.train.baselines import grpo_dataset
    from nlft.train.sdft import sdft_dataset

    info = {"name": "brief", "text": BRIEF_TEMPLATE, **({} if chat is None else {"chat_template": chat})}
    for rows, template in (([{**r, "provenance": {"template": info}} for r in records], BRIEF_TEMPLATE),
                           (records, SOLVE_TEMPLATE)):
        use_chat = chat if rows is not records else None
        nlft = NLFTTrainer(make_tiny_model(len(tokenizer)), NLFTConfig(output_dir=str(tmp_path), report_to=[],
                                                                       use_cpu=True), train_dataset=rows,
                           processing_class=tokenizer)
        assert nlft.args.base_template == template
        base_ids = nlft.train_dataset[0]["base_prompt_ids"]
        sft = sft_dataset(rows, tokenizer)
        assert sft[0]["input_ids"][: len(base_ids)] == base_ids  # the same tokens as NLFT's X_base
        assert sft[0]["completion_mask"].index(1) == len(base_ids)
        text = render(template, question=rows[0]["question"])
        grpo = grpo_dataset(rows, tokenizer)
        assert sdft_dataset(rows, tokenizer)[0]["prompt"] == grpo[0]["prompt"]  # SDFT's student prompt too
        if use_chat is False:  # generated without the chat template: trained without it, after the response cue
            assert grpo[0]["prompt"] == plain_prompt(text) and tokenizer.decode(base_ids) == plain_prompt(text)
        else:
            assert grpo[0]["prompt"] == [{"role": "user", "content": text}]
            assert tokenizer.decode(base_ids) == apply_chat(tokenizer, text, None)


def test_reft_reward_func_values():
    """ReFT reward: 1 correct, 0.1 extractable but wrong, 0 when no '#### N' answer."""
    completions = ["3 + 4 = 7\n#### 7", "#### 8", "I think it is 7", "#### 1,000"]
    assert reft_reward_func(completions, gold=["7", "7", "7", "1000"]) == [1.0, 0.1, 0.0, 1.0]
    conversational = [[{"role": "assistant", "content": "#### 30"}]]
    assert reft_reward_func(conversational, gold=["30"]) == [1.0]


def test_reft_questions_dedupe_and_gold(records):
    qs = reft_questions([*records, records[0]])
    assert [q["gold"] for q in qs] == ["7", "30", "36", "15"]
    with pytest.raises(DataError, match="line 1, field 'reference'"):
        reft_questions([{**records[0], "reference": "no answer here"}])


def test_rule_reward_model_in_trl_ppo_interface(tokenizer):
    """The reward model answers TRL PPO's get_reward: backbone hidden states -> score -> value at the last token."""
    prompts = [tokenizer("Q: 3 + 4?")["input_ids"], tokenizer("Q: 6 * 5? Answer")["input_ids"]]
    model = RuleRewardModel(tokenizer, prompts, ["7", "30"])
    responses = [tokenizer(" #### 7")["input_ids"], tokenizer(" #### 31")["input_ids"]]
    pad = tokenizer.pad_token_id
    width = max(len(p) for p in prompts)
    rows = []
    for p, r in zip(prompts, responses):
        rows.append([pad] * (width - len(p)) + p + r + [pad] * 3)  # queries left-padded, responses right-padded
    ids = torch.tensor([row + [pad] * (max(map(len, rows)) - len(row)) for row in rows])
    attention = ids != pad
    # the computation of TRL's get_reward (trl.experimental.utils), restated
    backbone = getattr(model, model.base_model_prefix)
    out = backbone(input_ids=torch.masked_fill(ids, ~attention, 0), attention_mask=attention, return_dict=True,
                   output_hidden_states=True, use_cache=False)
    logits = model.score(out.hidden_states[-1])
    assert logits.shape == (2, ids.shape[1], 1)
    assert logits[:, -1, 0].tolist() == pytest.approx([1.0, 0.1])


def test_ppo_needs_trl_with_ppo(records, tokenizer):
    if ppo_available():
        pytest.skip("this TRL ships PPO")
    with pytest.raises(ImportError, match=r"nlft\[reft-ppo\]"):
        make_ppo_trainer(None, tokenizer, records, None, value_model=None)


def test_reft_rewards_other_tasks_with_their_checker():
    from nlft.tasks.sources import load_questions
    from nlft.train.baselines import reft_questions, reft_reward_func

    choice = [{"question": "Capital of France?\n\nA) Rome\nB) Paris", "gold": "B", "task": "choice",
               "meta": {"choices": ["Rome", "Paris"]}}]
    (q,) = reft_questions(choice, source="d.jsonl")
    assert q["gold"] == "B" and json.loads(q["task_row"])["task"] == "choice"
    assert reft_reward_func(["#### B", "#### A", "no idea", "#### Z"], [q["gold"]] * 4, [q["task_row"]] * 4) == [
        1.0, 0.1, 0.0, 0.0]
    rg = load_questions("rg:spell_backward", limit=1)
    (q,) = reft_questions(rg)
    assert reft_reward_func([f"#### {rg[0]['gold']}"], [q["gold"]], [q["task_row"]]) == [1.0]
    assert "task_row" not in reft_questions([{"question": "1+1?", "gold": "2"}])[0]  # numbers as before
    with pytest.raises(DataError, match=r"d\.jsonl, field 'task': these rows mix tasks"):
        reft_questions([{"question": "1+1?", "gold": "2"}, *choice], source="d.jsonl")


def test_rule_reward_model_scores_a_tasks_answers(tokenizer):
    """PPO's rule reward of a choice record comes from the choice task (the letter among the record's options)."""
    from nlft.train.baselines import reft_questions

    (q,) = reft_questions([{"question": "Capital?\n\nA) Rome\nB) Paris", "gold": "B", "task": "choice",
                            "meta": {"choices": ["Rome", "Paris"]}}])
    prompt = tokenizer("Q: capital?")["input_ids"]
    model = RuleRewardModel(tokenizer, [prompt], [q["gold"]], [q["task_row"]])
    for answer, reward in ((" #### B", 1.0), (" #### A", 0.1), (" #### Q", 0.0)):
        ids = torch.tensor([prompt + tokenizer(answer)["input_ids"]])
        out = model.backbone(input_ids=ids, attention_mask=torch.ones_like(ids))
        assert out.hidden_states[-1][0, -1, 0].item() == pytest.approx(reward)
