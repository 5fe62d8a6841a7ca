"""Judgments of incorrect outputs (the names before tasks existed): the calculator judge and the LLM judge prompt.

The pure functions live in :mod:`nlft.tasks.calculator` (the number task's rule judge); this module
re-exports them so that earlier imports keep working.
"""

from __future__ import annotations

from nlft.tasks.calculator import (
    Step,
    UnsafeExpression,
    calculator_judgment,
    find_steps,
    format_number,
    judge_prompt,
    safe_eval,
    says_correct,
)

__all__ = ["Step", "UnsafeExpression", "calculator_judgment", "find_steps", "format_number", "judge_prompt",
           "safe_eval", "says_correct"]
