"""Prompt templates: the three NLFT views, and the paper's solve and judge instructions.

Templates are plain ``str.format`` strings. The view templates may use ``{question}``,
``{reference}`` and ``{judgment}``. Every prompt is a single user turn: when the tokenizer has a
chat template it is applied (with the generation prompt appended), otherwise the text is used as is.
"""

from __future__ import annotations

from typing import Any

# X_base: the ordinary training prompt, the one the model sees at inference.
BASE_TEMPLATE = (
    "Solve the following math problem step by step. Write your reasoning, then the final answer "
    "on its own line as '#### <number>'.\n\nQuestion: {question}"
)

# X_standard: the same question, plus the standard answer to refer to.
STANDARD_TEMPLATE = (
    "Solve the following math problem step by step. Write your reasoning, then the final answer "
    "on its own line as '#### <number>'.\n\nQuestion: {question}\n\n"
    "Refer to the standard answer below when you write your response.\n"
    "Standard answer:\n{reference}"
)

# X_judge: the same question, plus a judgment describing the weaknesses of a response.
JUDGE_VIEW_TEMPLATE = (
    "Solve the following math problem step by step. Write your reasoning, then the final answer "
    "on its own line as '#### <number>'.\n\nQuestion: {question}\n\n"
    "Write a response that has the weaknesses described in this judgment.\n"
    "Judgment:\n{judgment}"
)

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


def render(template: str, **fields: Any) -> str:
    """Fill a template, with a clear error when it names a field that is not given."""
    try:
        return template.format(**fields)
    except KeyError as err:
        raise ValueError(
            f"prompt template uses the field {err.args[0]!r}, which is not available here "
            f"(available: {', '.join(sorted(fields))})"
        ) from None


def apply_chat(tokenizer: Any, text: str, use_chat_template: bool | None = None) -> str:
    """Wrap ``text`` as one user turn with the tokenizer's chat template, when it has one.

    ``use_chat_template=None`` uses the template if the tokenizer defines one.
    """
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if use_chat_template is None:
        use_chat_template = has_template
    if use_chat_template and not has_template:
        raise ValueError(
            "use_chat_template=True but the tokenizer has no chat template; "
            "set use_chat_template to false to use plain prompts"
        )
    if not use_chat_template:
        return text
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )
