"""The math-expression task: answers such as ``3/4``, ``\\frac{3}{4}``, ``2\\sqrt{2}`` or ``(1, 2]`` (math-verify).

A JSONL/CSV file with ``--answer-type math``: each answer is a LaTeX or plain expression (or a
solution ending in ``#### <expression>``). The gold is the expression; an output is right when
``math_verify.verify`` finds its answer equal to it (equivalent forms count: ``0.75`` = ``3/4``,
``\\sqrt{8}`` = ``2\\sqrt{2}``). Strict reading takes the ``####`` line; flexible also ``\\boxed{}``,
"the answer is", ``Answer:`` and the last line.
"""

from __future__ import annotations

import threading
from typing import Any

from nlft.tasks import answers
from nlft.tasks._rows import FileTask, Where, answer_text, task_row
from nlft.tasks.base import Mode, no_answer, tidy
from nlft.tasks.prompts import task_prompts

_TIMEOUT_S = 5


def _math_verify() -> Any:
    try:
        import math_verify
    except ImportError as err:
        raise ImportError("the math task needs math-verify: pip install 'nlft[tasks]' (or math-verify)") from err
    return math_verify


def _timeout() -> int | None:
    # math-verify's timeouts use signals, which only the main thread may set.
    return _TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def parse_math(expression: str | None) -> list[Any]:
    """math-verify's parse of an expression (``$...$`` added when it has none); ``[]`` when it cannot read it (when
    math-verify returns the text alone, without a sympy value)."""
    if not expression or not expression.strip():
        return []
    mv = _math_verify()
    text = expression.strip()
    if "$" not in text and "\\boxed" not in text and "\\(" not in text:
        text = f"${text}$"
    try:
        parsed = list(mv.parse(text, parsing_timeout=_timeout()))
    except Exception:  # math-verify raises what sympy raises on odd input
        return []
    # What it cannot read comes back as the bare string only.
    return parsed if any(not isinstance(x, str) for x in parsed) else []


def same_math(answer: str | None, gold: str) -> bool:
    """Whether two expressions are equal for math-verify (``0.75`` and ``\\frac{3}{4}`` are)."""
    got, want = parse_math(answer), parse_math(gold)
    if not got or not want:
        return False
    try:
        return bool(_math_verify().verify(want, got, timeout_seconds=_timeout()))
    except Exception:
        return False


class MathTask(FileTask):
    """Final answers that are math expressions, equal when math-verify says so."""

    name = "math"
    summary = "a math expression (3/4, \\frac{3}{4}, 2\\sqrt{2}, intervals) from JSONL/CSV: math-verify"
    solve_template, brief_template, judge_instruction = task_prompts(
        "math problem", "<answer>", "a math expert", "a math problem", "Problem")

    def extract(self, output: str | None, mode: Mode = "strict") -> str | None:
        """The answer expression as written (``####`` line; flexible: also ``\\boxed{}`` and phrasings)."""
        return answers.first_answer(output, mode, lambda s: s if parse_math(s) else None)

    def is_correct(self, output: str | None, row: dict[str, Any], mode: Mode = "strict") -> bool:
        """Whether the expression read from ``output`` equals the row's gold expression."""
        return same_math(self.extract(output, mode), str(row["gold"]))

    def rule_judgment(self, output: str, row: dict[str, Any], mode: Mode = "strict") -> str:
        """"The answer X is not equal to Y" (X as ``mode`` reads it), or that no answer can be read."""
        gold = row["gold"]
        found = self.extract(output, mode)
        if found is None:
            loose = self.extract(output, "flexible") if mode == "strict" else None
            seen = f" (the last expression it states is {loose})" if loose is not None else ""
            return tidy(f"{no_answer(mode, '<answer>', row, seen)}; the correct answer is {gold}.")
        if same_math(found, gold):
            from nlft.tasks.prompts import CORRECT_JUDGMENT

            return CORRECT_JUDGMENT
        return tidy(f"The answer {found} is not equal to {gold}, the correct answer.")

    def build_row(self, row_id: str, question: str, answer: Any, raw: dict[str, Any], where: Where) -> dict[str, Any]:
        """A math row: the answer is an expression, or a solution ending in ``#### <expression>``."""
        text = answer_text(answer, where)
        gold = answers.hash_answer(text) if "####" in text else answers.clean(text)
        if not gold or not parse_math(gold):
            raise where.error(f"math-verify cannot read the answer {text[:60]!r} as an expression")
        reference = text if "####" in text else f"#### {gold}"
        return task_row(row_id, question, reference, gold, self.name)
