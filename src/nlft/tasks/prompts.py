"""Prompt templates: the three NLFT views, and the paper's solve and judge instructions.

Templates are plain ``str.format`` strings with ``{question}``. The measurement views are built on
the same prompt as X_base, the prompt the outputs were generated with: the view text
(:data:`STANDARD_VIEW`, :data:`JUDGE_VIEW`, with ``{reference}`` / ``{judgment}``) is appended to
the question inside that prompt (:func:`view_text`), so the three views differ only by the standard
answer or the judgment.

Every prompt is a single user turn, joined to its response the same way in generation, training
and evaluation (:func:`apply_chat`): through the chat template where the tokenizer has one,
otherwise with an explicit response cue (``Answer:`` and a newline), so that a response never reads
as a continuation of the question, the standard answer or the judgment.
"""

from __future__ import annotations

from typing import Any

# A short solve prompt without worked examples (the quickstart's and the study's; the name "base" in
# provenance). X_base defaults to whatever prompt the records were generated with.
BASE_TEMPLATE = (
    "Solve the following math problem step by step. Write your reasoning, then the final answer "
    "on its own line as '#### <number>'.\n\nQuestion: {question}"
)

# A brief solve prompt for arithmetic tasks (the study's): short outputs, no worked examples.
BRIEF_TEMPLATE = (
    "Solve the arithmetic problem. Answer briefly: write the calculation, then the final answer on its own "
    "line as '#### <number>'.\n\nQuestion: {question}\nAnswer:"
)

# X_standard: the question inside X_base's prompt, followed by the standard answer to refer to.
STANDARD_VIEW = (
    "\n\nRefer to the standard answer below when you write your response.\n"
    "Standard answer:\n{reference}"
)

# X_judge: the question inside X_base's prompt, followed by a judgment of a response's weaknesses.
JUDGE_VIEW = (
    "\n\nWrite a response that has the weaknesses described in this judgment.\n"
    "Judgment:\n{judgment}"
)

# Earlier names of the view texts (whole prompts before 0.2; a view text with {question} is still
# taken as a whole prompt).
STANDARD_TEMPLATE = STANDARD_VIEW
JUDGE_VIEW_TEMPLATE = JUDGE_VIEW

# Without a chat template a prompt ends with this cue and a newline before the response.
RESPONSE_CUE = "Answer:"

FEW_SHOT_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "A baker makes 24 muffins in the morning and 18 in the afternoon. He sells 30 of them. "
        "How many muffins are left?",
        "The baker makes 24 + 18 = 42 muffins.\nAfter selling 30, 42 - 30 = 12 muffins are left.\n#### 12",
    ),
    (
        "Tom buys 3 notebooks at $4 each and a pen for $2. How much does he spend?",
        "The notebooks cost 3 * 4 = 12 dollars.\nWith the pen he spends 12 + 2 = 14 dollars.\n#### 14",
    ),
    (
        "A garden has 5 rows of 8 tulips. Half of the tulips are red. How many tulips are red?",
        "There are 5 * 8 = 40 tulips.\nHalf of them are red: 40 / 2 = 20.\n#### 20",
    ),
    (
        "Lena runs 3 kilometres every weekday and 5 kilometres on each weekend day. "
        "How many kilometres does she run in a week?",
        "On weekdays she runs 5 * 3 = 15 kilometres.\nOn the weekend she runs 2 * 5 = 10 kilometres.\n"
        "In a week she runs 15 + 10 = 25 kilometres.\n#### 25",
    ),
    (
        "A box holds 12 eggs. A farm collects 150 eggs. How many full boxes can it fill?",
        "150 / 12 = 12.5, so the farm can fill 12 full boxes.\n#### 12",
    ),
)


def _few_shot_block() -> str:
    return "\n\n".join(f"Question: {q}\nAnswer: {a}" for q, a in FEW_SHOT_EXAMPLES)


# Paper appendix A.2, in substance: step-by-step solution in the '{analysis}\n#### {answer}' format,
# with five worked examples.
SOLVE_TEMPLATE = (
    "Solve the math problem step by step. Your output must follow the format\n"
    "{{analysis}}\n#### {{answer number}}\n"
    "where '####' appears exactly once, followed only by the final numeric answer.\n\n"
    "Here are some examples:\n\n" + _few_shot_block().replace("{", "{{").replace("}", "}}") + "\n\n"
    "Now solve this problem.\nQuestion: {question}\nAnswer:"
)

# The built-in prompts by name (``--prompt solve``, the quickstart's and the study's ``brief``).
TEMPLATES = {"solve": SOLVE_TEMPLATE, "base": BASE_TEMPLATE, "brief": BRIEF_TEMPLATE}

CORRECT_JUDGMENT = "### The response is correct. ###"

# Paper appendix A.1, in substance: a math expert checks the process and the final answer.
JUDGE_INSTRUCTION = (
    "You are a math expert. You are given a math problem, a student's response and the correct answer. "
    "Check the student's solution process and final answer carefully.\n"
    f"If the response is correct, output exactly: {CORRECT_JUDGMENT}\n"
    "Otherwise, analyse why the solution is wrong: point out the first incorrect step, what is wrong "
    "with it, and what the correct reasoning would be.\n\n"
    "Problem:\n{question}\n\nStudent's response:\n{output}\n\nCorrect answer:\n{reference}"
)


# The solve prompt of a task other than numbers: the same shape as BASE_TEMPLATE, with the task's
# kind of problem and the form of its final answer filled in.
TASK_SOLVE_TEMPLATE = (
    "Solve the following {problem} step by step. Write your reasoning, then the final answer on its own line "
    "as '#### {answer}'.\n\nQuestion: {{question}}"
)

# The LLM judge instruction (A.1) for any task: an expert checks the response's reasoning and final answer.
TASK_JUDGE_INSTRUCTION = (
    "You are {expert}. You are given {a_problem}, a response and the correct answer. "
    "Check the response's reasoning and final answer carefully.\n"
    f"If the response is correct, output exactly: {CORRECT_JUDGMENT}\n"
    "Otherwise, analyse why the response is wrong: point out the first incorrect step, what is wrong "
    "with it, and what the correct reasoning would be.\n\n"
    "{label}:\n{{question}}\n\nResponse:\n{{output}}\n\nCorrect answer:\n{{reference}}"
)


# Its brief form (``--prompt brief``, the quickstart's and the study's): short outputs, like BRIEF_TEMPLATE.
TASK_BRIEF_TEMPLATE = (
    "Answer the following {problem}. Answer briefly: write the final answer on its own line as '#### {answer}'."
    "\n\nQuestion: {{question}}\nAnswer:"
)


def task_solve_template(problem: str, answer: str, *, brief: bool = False) -> str:
    """A task's solve prompt (``{question}``): ``problem`` is what is solved ("task"), ``answer`` the answer's form.

    ``brief``: the short form (:data:`TASK_BRIEF_TEMPLATE`) instead of step by step.
    """
    return (TASK_BRIEF_TEMPLATE if brief else TASK_SOLVE_TEMPLATE).format(problem=problem, answer=answer)


def task_prompts(problem: str, answer: str, expert: str, a_problem: str, label: str) -> tuple[str, str, str]:
    """A task's ``(solve prompt, brief prompt, judge instruction)``: :func:`task_solve_template` (step by step and
    brief) and :func:`task_judge_instruction`."""
    return (task_solve_template(problem, answer), task_solve_template(problem, answer, brief=True),
            task_judge_instruction(expert, a_problem, label))


def task_judge_instruction(expert: str, a_problem: str, label: str = "Task") -> str:
    """A task's LLM judge instruction (``{question}``, ``{output}``, ``{reference}``), A.1 generalised.

    ``expert``: "a careful grader"; ``a_problem``: "a multiple-choice question"; ``label``: the heading of
    the question ("Question").
    """
    return TASK_JUDGE_INSTRUCTION.format(expert=expert, a_problem=a_problem, label=label)


def read_template(path: Any, *, field: str = "template") -> str:
    """The text of a prompt template file, which must hold ``{question}``; DataError naming the file and the option."""
    from pathlib import Path

    from nlft.utils.files import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError("prompt template file not found", path=path, field=field)
    text = path.read_text(encoding="utf-8")
    if "{question}" not in text:
        raise DataError("the prompt template must contain {question}", path=path, field=field)
    return text


def render(template: str, **fields: Any) -> str:
    """Fill a template, with a clear error when it names a field that is not given."""
    try:
        return template.format(**fields)
    except KeyError as err:
        raise ValueError(
            f"prompt template uses the field {err.args[0]!r}, which is not available here "
            f"(available: {', '.join(sorted(fields))})"
        ) from None


def view_text(base_template: str, view: str, **fields: Any) -> str:
    """The prompt of a measurement view: ``view`` (rendered) appended to the question in ``base_template``.

    A ``view`` that itself holds ``{question}`` is a whole prompt of its own and is rendered as is
    (the layout before views were built on X_base).

    Args:
        base_template: X_base's template (``{question}``). view: :data:`STANDARD_VIEW`,
            :data:`JUDGE_VIEW` or another text with ``{reference}`` / ``{judgment}``.
        fields: ``question``, ``reference``, ``judgment``.
    """
    if "{question}" in view:
        return render(view, **fields)
    return render(base_template, **{**fields, "question": fields["question"] + render(view, **fields)})


def plain_prompt(text: str) -> str:
    """A prompt for a model without chat template: the text, the response cue, then a newline.

    A text that already ends with the cue (the solve instruction's ``Answer:``) gets the newline
    only.
    """
    body = text.rstrip()
    if body.endswith(RESPONSE_CUE):
        return body + "\n"
    return f"{body}\n{RESPONSE_CUE}\n"


def uses_chat(tokenizer: Any, use_chat_template: bool | None) -> bool:
    """Whether prompts go through the chat template: as asked, or (None) when the tokenizer has one."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if use_chat_template is None:
        return has_template
    if use_chat_template and not has_template:
        raise ValueError(
            "use_chat_template=True but the tokenizer has no chat template; "
            "set use_chat_template to false to use plain prompts"
        )
    return use_chat_template


def apply_chat(tokenizer: Any, text: str, use_chat_template: bool | None = None) -> str:
    """The prompt text a response follows: one user turn of the chat template, or :func:`plain_prompt`.

    ``use_chat_template=None`` uses the template if the tokenizer defines one. Generation, the
    three training views and evaluation all build their prompts here, so a response is joined to
    its prompt the same way everywhere.
    """
    if not uses_chat(tokenizer, use_chat_template):
        return plain_prompt(text)
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )


def prompt_ids(tokenizer: Any, text: str, use_chat_template: bool | None = None) -> list[int]:
    """Token ids of the prompt :func:`apply_chat` builds from ``text``, the one rule for every stage.

    A chat template writes its own special tokens (BOS included); a plain prompt gets the
    tokenizer's.
    """
    chat = uses_chat(tokenizer, use_chat_template)
    return tokenizer(apply_chat(tokenizer, text, chat), add_special_tokens=not chat)["input_ids"]
