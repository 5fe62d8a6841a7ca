"""The number task: GSM8K, numeric JSONL/CSV files and the arithmetic reasoning-gym generators (today's rows).

Answers are numbers, read and compared by :mod:`nlft.tasks.grading`; the rule judge is the
calculator judge (:func:`nlft.tasks.calculator.calculator_judgment`); the prompts are the paper's
(:data:`~nlft.tasks.prompts.SOLVE_TEMPLATE` and :data:`~nlft.tasks.prompts.JUDGE_INSTRUCTION`,
``--prompt base`` and ``brief`` the short ones). Rows without ``task`` are number rows.
"""

from __future__ import annotations

from typing import Any

from nlft.tasks import grading
from nlft.tasks.base import Mode, Task, truncated
from nlft.tasks.calculator import calculator_judgment
from nlft.tasks.prompts import JUDGE_INSTRUCTION, SOLVE_TEMPLATE, TEMPLATES


class NumberTask(Task):
    """Final answers that are numbers (``#### 72``; flexible: the last number)."""

    name = "number"
    summary = "a final number (GSM8K, numeric JSONL/CSV, chain_sum ...): number comparison, calculator judge"
    solve_template = SOLVE_TEMPLATE
    judge_instruction = JUDGE_INSTRUCTION
    answer_line = r"####[ \t]*(?:" + grading._NUMBER + r")[^\n]*(?:\n|$)"

    def template(self, prompt: str | None = None) -> str:
        """The paper's prompts by name: ``solve`` (A.2, the default), ``base``, ``brief``."""
        if prompt is None:
            return SOLVE_TEMPLATE
        if prompt not in TEMPLATES:
            raise ValueError(f"unknown prompt {prompt!r}; choose one of {', '.join(TEMPLATES)} or a template file")
        return TEMPLATES[prompt]

    def extract(self, output: str | None, mode: Mode = "strict") -> str | None:
        """The normalised number after ``####`` (strict) or the last number (flexible)."""
        return grading.extract_answer(output, mode)

    def is_correct(self, output: str | None, row: dict[str, Any], mode: Mode = "strict") -> bool:
        """Whether the number read from ``output`` equals the row's gold number."""
        return grading.is_correct(output, str(row["gold"]), mode)

    def rule_judgment(self, output: str, row: dict[str, Any], mode: Mode = "strict") -> str:
        """The calculator judge: wrong computations, then the final answer (as ``mode`` reads it) against the
        reference."""
        return calculator_judgment(output, row["reference"], str(row["gold"]), mode, cut_off=truncated(row))

    def gold_of(self, row: dict[str, Any], *, source: Any = "dataset", line: int | None = None) -> str:
        """The normalised gold number: ``gold``, else the ``#### N`` of ``reference`` (or ``answer``)."""
        return grading.gold_of(row, source=source, line=line)
