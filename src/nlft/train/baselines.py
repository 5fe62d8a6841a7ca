"""Baselines of the paper on TRL: SFT (SFTTrainer) and ReFT (PPO, or GRPO) with the rule-based reward.

Both read the same NLFT data file as NLFT itself, and see the same prompt: X_base, the prompt the records'
outputs were generated with (their provenance, :func:`nlft.train.views.training_prompt`, the rule
:class:`nlft.NLFTTrainer` follows too; ``base_template`` sets another), tokenized exactly as
:func:`nlft.train.views.tokenize_record` tokenizes it for NLFT. So SFT on ``outputs`` and NLFT differ only in
the per-token weights of the loss.

- SFT, ``data="outputs"``: the correct outputs NLFT trains on (the fair baseline; see the method
  spec's critique). ``data="reference"``: the gold solutions of every question (the paper's SFT).
- ReFT (Luong et al. 2024): SFT warm-up, then reinforcement learning with the reward
  :func:`nlft.tasks.grading.reft_reward` (1 correct, 0.1 wrong but extractable, 0 otherwise; for tasks other
  than numbers the same from the task's reader and checker, :meth:`nlft.tasks.base.Task.reward`) and a KL
  penalty towards the warm-up model. ``algo="ppo"`` uses TRL's PPO (``trl.experimental.ppo``, removed
  after trl 1.12: install ``nlft[reft-ppo]``); ``algo="grpo"`` uses TRL's GRPOTrainer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import torch

from nlft.tasks.prompts import plain_prompt, prompt_ids, render, uses_chat
from nlft.train.views import training_prompt
from nlft.utils.files import DataError

SFT_DATA_MODES = ("outputs", "reference")
REFT_ALGOS = ("grpo", "ppo")


# ---- SFT --------------------------------------------------------------------------------------------


def sft_examples(records: Sequence[dict[str, Any]], mode: str = "outputs", *, source: str = "dataset"
                 ) -> list[dict[str, str]]:
    """``(question, completion)`` pairs for SFT from NLFT records.

    ``mode="outputs"``: the outputs marked correct (the chain-of-thought NLFT trains on);
    ``mode="reference"``: the reference solution of every distinct question.
    """
    if mode not in SFT_DATA_MODES:
        raise ValueError(f"sft data mode {mode!r} is not valid; choose one of {', '.join(SFT_DATA_MODES)}")
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for i, row in enumerate(records):
        field = "output" if mode == "outputs" else "reference"
        if not isinstance(row.get(field), str) or not row[field].strip():
            raise DataError("missing or empty text", path=source, line=i + 1, field=field)
        if mode == "outputs":
            if row.get("correct") is True:
                out.append({"question": row["question"], "completion": row["output"]})
        elif row["question"] not in seen:
            seen.add(row["question"])
            out.append({"question": row["question"], "completion": row["reference"]})
    if not out:
        raise DataError("no training example for SFT: no output is marked correct (try --sft-data reference)"
                        if mode == "outputs" else "no rows", path=source)
    return out


def sft_dataset(records: Sequence[dict[str, Any]], tokenizer: Any, *, mode: str = "outputs",
                base_template: str | None = None, use_chat_template: bool | None = None,
                source: str = "dataset") -> Any:
    """A pre-tokenized prompt/completion ``datasets.Dataset`` for TRL's SFTTrainer.

    Columns: ``input_ids`` (prompt + completion + EOS) and ``completion_mask`` (1 on completion
    tokens), so that SFTTrainer with ``completion_only_loss=True`` trains on the completion only.
    The tokens are those of NLFT's base view (:func:`nlft.train.views.tokenize_record`), under
    ``base_template`` or, when None, the prompt the records were generated with
    (:func:`nlft.train.views.training_prompt`).
    """
    from datasets import Dataset

    from nlft.train.views import tokenize_record

    base_template, use_chat_template = training_prompt(records, template=base_template,
                                                      use_chat_template=use_chat_template, source=source)
    rows = []
    for ex in sft_examples(records, mode, source=source):
        tok = tokenize_record({"question": ex["question"], "reference": "", "output": ex["completion"],
                               "correct": True, "judgment": None}, tokenizer, base_template=base_template,
                              standard_template="", judge_template="", use_chat_template=use_chat_template,
                              views=())
        prompt, response = tok["base_prompt_ids"], tok["response_ids"]
        rows.append({"input_ids": prompt + response, "completion_mask": [0] * len(prompt) + [1] * len(response)})
    return Dataset.from_list(rows)


def make_sft_trainer(model: Any, tokenizer: Any, records: Sequence[dict[str, Any]], args: Any, *,
                     mode: str = "outputs", peft_config: Any = None, callbacks: list[Any] | None = None,
                     base_template: str | None = None, use_chat_template: bool | None = None,
                     source: str = "dataset") -> Any:
    """TRL ``SFTTrainer`` on :func:`sft_dataset` (completion-only loss). ``args``: a ``trl.SFTConfig``.

    ``base_template`` None: the records' generation prompt (:func:`nlft.train.views.training_prompt`).
    """
    from trl import SFTTrainer

    args.completion_only_loss = True
    dataset = sft_dataset(records, tokenizer, mode=mode, base_template=base_template,
                          use_chat_template=use_chat_template, source=source)
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                      peft_config=peft_config, callbacks=callbacks)


# ---- ReFT --------------------------------------------------------------------------------------------


def reft_questions(records: Sequence[dict[str, Any]], *, source: str = "dataset") -> list[dict[str, str]]:
    """Distinct questions with their gold answers (``question``, ``gold``) from NLFT records.

    ``gold`` is taken from the record, or read from its ``reference`` (``#### N``). Records of a task other
    than numbers also give ``task_row``: the JSON of what their task's checker reads (``gold``, ``task``,
    ``meta``), which :func:`reft_reward_of` scores with that task. Records of several tasks are refused.
    """
    from nlft.tasks.registry import common_task, is_number

    try:
        task = common_task(records)
    except ValueError as err:
        raise DataError(str(err), path=source, field="task") from None
    out, seen = [], set()
    for i, row in enumerate(records):
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise DataError("missing or empty question", path=source, line=i + 1, field="question")
        if question in seen:
            continue
        seen.add(question)
        item = {"question": question, "gold": task.gold_of(row, source=source, line=i + 1)}
        if not is_number(task):
            item["task_row"] = json.dumps({"gold": item["gold"], "task": task.name, "meta": row.get("meta") or {}})
        out.append(item)
    return out


def reft_reward_of(text: str, gold: str, task_row: str | None = None) -> float:
    """ReFT's reward (1 right, 0.1 wrong but readable, 0 unreadable): of the number ``gold``, or of ``task_row``'s task
    (:meth:`nlft.tasks.base.Task.reward`, strict reading as for numbers)."""
    from nlft.tasks.grading import reft_reward
    from nlft.tasks.registry import task_of

    if task_row is None:
        return reft_reward(text, gold)
    row = json.loads(task_row)
    return task_of(row).reward(text, row)


def _completion_text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    # conversational: a list of messages; the assistant's text is the last message's content
    return str(completion[-1]["content"]) if completion else ""


def reft_reward_func(completions: Sequence[Any], gold: Sequence[str], task_row: Sequence[str] | None = None,
                     **kwargs: Any) -> list[float]:
    """ReFT reward of each completion, in the reward-function interface of TRL's GRPOTrainer.

    ``completions``: texts (or conversational message lists); ``gold`` (and, for tasks other than numbers,
    ``task_row``): the dataset's columns.
    """
    rows = task_row if task_row is not None else [None] * len(gold)
    return [reft_reward_of(_completion_text(c), g, r) for c, g, r in zip(completions, gold, rows, strict=True)]


def grpo_dataset(records: Sequence[dict[str, Any]], tokenizer: Any, *, base_template: str | None = None,
                 use_chat_template: bool | None = None, source: str = "dataset") -> Any:
    """``prompt`` (the X_base prompt; conversational when the chat template is used) and ``gold`` columns (and
    ``task_row`` for tasks other than numbers). ``base_template`` None: the records' generation prompt."""
    from datasets import Dataset

    base_template, use_chat_template = training_prompt(records, template=base_template,
                                                      use_chat_template=use_chat_template, source=source)
    use_chat = uses_chat(tokenizer, use_chat_template)
    rows = []
    for q in reft_questions(records, source=source):
        text = render(base_template, question=q["question"])
        prompt: Any = [{"role": "user", "content": text}] if use_chat else plain_prompt(text)
        rows.append({"prompt": prompt, **{k: v for k, v in q.items() if k != "question"}})
    return Dataset.from_list(rows)


def make_grpo_trainer(model: Any, tokenizer: Any, records: Sequence[dict[str, Any]], args: Any, *,
                      peft_config: Any = None, callbacks: list[Any] | None = None,
                      base_template: str | None = None, use_chat_template: bool | None = None,
                      source: str = "dataset") -> Any:
    """TRL ``GRPOTrainer`` with the ReFT reward; ``args`` a ``trl.GRPOConfig`` (``beta`` is the KL coefficient).

    ``base_template`` None: the records' generation prompt (:func:`nlft.train.views.training_prompt`).
    """
    from trl import GRPOTrainer

    dataset = grpo_dataset(records, tokenizer, base_template=base_template, use_chat_template=use_chat_template,
                           source=source)
    return GRPOTrainer(model=model, reward_funcs=reft_reward_func, args=args, train_dataset=dataset,
                       processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)


def ppo_available() -> bool:
    """Whether the installed TRL still ships PPO (``trl.experimental.ppo``, trl <= 1.12)."""
    try:
        from trl.experimental.ppo import PPOTrainer  # noqa: F401
    except ImportError:
        return False
    return True


class _RuleBackbone(torch.nn.Module):
    """Reads each sequence back to text and returns its rule-based reward at every position, shape (B, T, 1)."""

    def __init__(self, tokenizer: Any, gold_by_prompt: dict[tuple[int, ...], tuple[str, str | None]]) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.gold_by_prompt = gold_by_prompt
        self.prompt_lengths = sorted({len(k) for k in gold_by_prompt}, reverse=True)
        self.anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)  # gives the module a device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> SimpleNamespace:
        rewards = torch.zeros(input_ids.shape[0], device=input_ids.device)
        for b in range(input_ids.shape[0]):
            ids = input_ids[b][attention_mask[b].bool()].tolist()
            for length in self.prompt_lengths:
                gold = self.gold_by_prompt.get(tuple(ids[:length]))
                if gold is not None:
                    text = self.tokenizer.decode(ids[length:], skip_special_tokens=True)
                    rewards[b] = reft_reward_of(text, *gold)
                    break
        hidden = rewards[:, None, None].expand(-1, input_ids.shape[1], 1).to(self.anchor.dtype)
        return SimpleNamespace(hidden_states=(hidden,))


class RuleRewardModel(torch.nn.Module):
    """The ReFT reward in the reward-model interface TRL's PPO expects (``base_model_prefix`` + ``score``).

    TRL's ``get_reward`` runs ``getattr(model, model.base_model_prefix)`` on the query+response ids
    and reads ``model.score(hidden_states[-1])`` at the last response token: here the "hidden state"
    is the rule-based reward itself and ``score`` is the identity.
    """

    base_model_prefix = "backbone"

    def __init__(self, tokenizer: Any, prompts_ids: Sequence[Sequence[int]], golds: Sequence[str],
                 task_rows: Sequence[str | None] | None = None) -> None:
        super().__init__()
        rows = task_rows if task_rows is not None else [None] * len(golds)
        self.backbone = _RuleBackbone(tokenizer, {tuple(p): (g, r) for p, g, r in zip(prompts_ids, golds, rows,
                                                                                       strict=True)})
        self.score = torch.nn.Identity()


def make_ppo_trainer(model: Any, tokenizer: Any, records: Sequence[dict[str, Any]], args: Any, *,
                     value_model: Any, peft_config: Any = None, callbacks: list[Any] | None = None,
                     base_template: str | None = None, use_chat_template: bool | None = None,
                     source: str = "dataset") -> Any:
    """TRL's PPO (trl <= 1.12) with the rule-based ReFT reward; ``args`` a ``trl.experimental.ppo.PPOConfig``.

    ``value_model``: a sequence-classification model with one label (the critic), e.g.
    ``AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)``. ``base_template`` None: the
    records' generation prompt (:func:`nlft.train.views.training_prompt`).
    """
    try:
        from trl.experimental.ppo import PPOTrainer
    except ImportError:
        raise ImportError(
            "ReFT with PPO needs TRL's PPO, which trl removed after 1.12: pip install 'nlft[reft-ppo]' "
            "(trl 1.12), or use --reft-algo grpo") from None
    from datasets import Dataset

    questions = reft_questions(records, source=source)
    base_template, use_chat_template = training_prompt(records, template=base_template,
                                                      use_chat_template=use_chat_template, source=source)
    prompts = []
    for q in questions:
        text = render(base_template, question=q["question"])
        prompts.append(prompt_ids(tokenizer, text, use_chat_template))
    reward_model = RuleRewardModel(tokenizer, prompts, [q["gold"] for q in questions],
                                   [q.get("task_row") for q in questions])
    dataset = Dataset.from_list([{"input_ids": p} for p in prompts])
    return PPOTrainer(args=args, processing_class=tokenizer, model=model, ref_model=None, reward_model=reward_model,
                      train_dataset=dataset, value_model=value_model, peft_config=peft_config, callbacks=callbacks)
