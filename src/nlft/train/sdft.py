"""SDFT: TRL's self-distilled fine-tuning (``trl.experimental.sdft.SDFTTrainer``) on the questions of NLFT records.

SDFT (Shenfeld et al. 2026, arXiv 2601.19897) learns on-policy from demonstrations: at every step the
model being trained (the student) answers each question under the training prompt, and the same model
shown the question *and* the standard answer (the teacher) scores those answers token by token; the
student is distilled towards the teacher's per-token distribution (TRL's default objective: the
divergence over the teacher's and student's top 100 tokens, interpolated between forward and reverse
KL with alpha 0.5). With LoRA the teacher is the initial model (TRL's ``teacher_model_kind="base"``:
the adapter switched off), so only the prompt tells the two apart.

What the two see, token for token (checked by the tests on the ids the trainer builds):

- the student: the records' training prompt (X_base, the one every method trains under,
  :func:`nlft.train.views.training_prompt`), one user turn of the chat template, tokenized as
  :func:`nlft.tasks.prompts.prompt_ids` tokenizes it for every other method;
- the teacher: TRL's ``teacher_prompt_template`` (its default, :data:`TEACHER_PROMPT`) joins that
  user text and the ``privileged_context`` in one user turn. The privileged context is the record's
  standard answer (``reference``) in :data:`SDFT_CONTEXT` ("Here is a correct answer to this
  question: ...", then a request for the model's own answer, in the style of the SDFT paper's
  demonstration prompt). Without a chat template the user text and the prompt are joined with
  :func:`nlft.tasks.prompts.plain_prompt`, the response cue after the privileged context.

Each distinct question of the records file is one training example (its first row's reference);
the records' outputs, grades and judgments are not read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from trl.experimental.sdft import SDFTTrainer
from trl.experimental.sdft.sdft_trainer import DemonstrationTeacherContextBuilder

from nlft.tasks.prompts import plain_prompt, render, uses_chat
from nlft.train.views import training_prompt
from nlft.utils.files import DataError

# The privileged context of each question: its standard answer, in the words the teacher reads.
SDFT_CONTEXT = ("Here is a correct answer to this question:\n{reference}\n\n"
                "Now write your own answer to the question.")
# TRL's teacher_prompt_template (its default): the student's user text, a blank line, the privileged context.
TEACHER_PROMPT = "{prompt}\n\n{privileged_context}"
TEACHER_KINDS = ("base", "live", "ema")


def sdft_examples(records: Sequence[dict[str, Any]], *, source: str = "dataset") -> list[dict[str, str]]:
    """The distinct questions of ``records`` with their standard answers: ``[{"question", "reference"}]``.

    A question asked in several rows counts once, with its first row's reference. DataError names the
    file, row and field of a missing or empty question or reference.
    """
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for i, row in enumerate(records):
        for field in ("question", "reference"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise DataError("missing or empty text", path=source, line=i + 1, field=field)
        if row["question"] not in seen:
            seen.add(row["question"])
            out.append({"question": row["question"], "reference": row["reference"]})
    if not out:
        raise DataError("no rows", path=source)
    return out


def read_context_template(path: str) -> str:
    """The text of a privileged-context template file, which must hold ``{reference}``."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise DataError("privileged-context template file not found", path=path, field="sdft_context_template")
    text = file.read_text(encoding="utf-8")
    if "{reference}" not in text:
        raise DataError("the privileged-context template must contain {reference}", path=path,
                        field="sdft_context_template")
    return text


def sdft_dataset(records: Sequence[dict[str, Any]], tokenizer: Any, *, base_template: str | None = None,
                 use_chat_template: bool | None = None, context_template: str = SDFT_CONTEXT,
                 source: str = "dataset") -> Any:
    """A ``datasets.Dataset`` in the columns TRL's SDFTTrainer reads, one row per distinct question.

    ``prompt``: the training prompt rendered with the question, as a one-message conversation when
    the chat template is used, else the :func:`~nlft.tasks.prompts.plain_prompt` text (with its
    response cue); ``privileged_context``: ``context_template`` rendered with the reference;
    ``user_text``: the rendered prompt before any chat or cue is added (what the teacher's prompt is built on).
    ``base_template`` None: the records' generation prompt (:func:`nlft.train.views.training_prompt`).
    """
    from datasets import Dataset

    base_template, use_chat_template = training_prompt(records, template=base_template,
                                                       use_chat_template=use_chat_template, source=source)
    chat = uses_chat(tokenizer, use_chat_template)
    rows = []
    for ex in sdft_examples(records, source=source):
        text = render(base_template, question=ex["question"])
        prompt: Any = [{"role": "user", "content": text}] if chat else plain_prompt(text)
        rows.append({"prompt": prompt, "privileged_context": render(context_template, reference=ex["reference"]),
                     "user_text": text})
    return Dataset.from_list(rows)


class _TeacherContext(DemonstrationTeacherContextBuilder):
    """TRL's teacher prompt, with plain prompts (no chat template) built on their user text.

    For a conversation TRL formats ``teacher_prompt_template`` with the last user turn's text and
    the chat template joins the response: unchanged. A plain prompt ends with the response cue
    (``Answer:`` and a newline), which TRL's formatting would leave in the middle of the teacher's
    prompt; here the template is formatted with the text before the cue and the cue put back after
    the privileged context, as :func:`~nlft.tasks.prompts.plain_prompt` joins every prompt.
    """

    def __init__(self, trainer: Any, user_texts: dict[str, str]) -> None:
        super().__init__(trainer)
        self.user_texts = user_texts

    def _compose_teacher_prompt(self, prompt: Any, privileged_context: Any) -> Any:
        if isinstance(prompt, list):
            return super()._compose_teacher_prompt(prompt, privileged_context)
        text = self.trainer.args.teacher_prompt_template.format(
            prompt=self.user_texts[prompt], privileged_context=self._stringify_privileged_context(privileged_context))
        return plain_prompt(text)


class TimedSDFTTrainer(SDFTTrainer):
    """TRL's SDFTTrainer that counts what its on-policy generation costs (:meth:`generation_cost`)."""

    def __init__(self, *args: Any, user_texts: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.teacher_context_builder = _TeacherContext(self, user_texts or {})
        self._cost = {"generation_seconds": 0.0, "tokens": 0, "completions": 0, "step_seconds": 0.0, "micro_steps": 0}

    def sample_rollouts(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        start = time.perf_counter()
        batch = super().sample_rollouts(inputs)
        if self.model.training:
            self._cost["generation_seconds"] += time.perf_counter() - start
            self._cost["tokens"] += int(batch["raw_completion_lengths"].sum())
            self._cost["completions"] += int(batch["raw_completion_lengths"].numel())
        return batch

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        loss = super().training_step(*args, **kwargs)
        self._cost["step_seconds"] += time.perf_counter() - start
        self._cost["micro_steps"] += 1
        return loss

    def generation_cost(self) -> dict[str, Any]:
        """What the on-policy generation cost in the optimizer steps this process ran (a resumed run: since the resume).

        ``generation_seconds``: sampling the completions (:meth:`sample_rollouts`, the prompts'
        tokenization included); ``tokens``: tokens generated (each completion up to and with its end
        of sequence); ``completions``; ``step_seconds``: the training steps in all (generation, the
        student's and the teacher's forward passes, the backward pass), of which ``distillation_seconds``
        are not generation; ``optimizer_steps``; ``per_step``: the means per optimizer step.
        """
        cost = {k: v for k, v in self._cost.items() if k != "micro_steps"}
        steps = self._cost["micro_steps"] // max(self.args.gradient_accumulation_steps, 1)
        cost["distillation_seconds"] = cost["step_seconds"] - cost["generation_seconds"]
        cost["optimizer_steps"] = steps
        cost["per_step"] = {k: cost[k] / max(steps, 1) for k in ("generation_seconds", "tokens", "step_seconds")}
        return cost


def make_sdft_trainer(model: Any, tokenizer: Any, records: Sequence[dict[str, Any]], args: Any, *,
                      peft_config: Any = None, callbacks: list[Any] | None = None,
                      base_template: str | None = None, use_chat_template: bool | None = None,
                      context_template: str = SDFT_CONTEXT, source: str = "dataset") -> TimedSDFTTrainer:
    """:class:`TimedSDFTTrainer` on :func:`sdft_dataset`; ``args`` a ``trl.experimental.sdft.SDFTConfig``."""
    dataset = sdft_dataset(records, tokenizer, base_template=base_template, use_chat_template=use_chat_template,
                           context_template=context_template, source=source)
    user_texts = {row["prompt"]: row["user_text"] for row in dataset if isinstance(row["prompt"], str)}
    return TimedSDFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                            peft_config=peft_config, callbacks=callbacks, user_texts=user_texts)
