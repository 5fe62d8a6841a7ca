"""What a task is: the one interface every stage asks about answers.

A task bundles how the final answer is read from an output (:meth:`Task.extract`), how it is checked
against a row's reference (:meth:`Task.is_correct`), the rule-based judgment of a wrong output
(:meth:`Task.rule_judgment`), and its prompts (the solve prompt and the LLM judge instruction, both
``str.format`` templates). Rows name their task in ``row["task"]`` (a spec such as ``"number"``,
``"choice"``, ``"rg:word_sorting"`` or ``"humaneval"``); rows without it are numeric, as before
tasks existed, so old files keep working.

A dataset row, for every task::

    {"id": str, "question": str,       # what the model is asked (the solve prompt fills {question})
     "reference": str,                 # the standard answer shown in X_standard
     "gold": str,                      # the canonical final answer (a number, a letter, code, ...)
     "task": str,                      # the task spec; absent means "number"
     "meta": dict}                     # what the checker needs besides gold (choices, tests, ...)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal

Mode = Literal["strict", "flexible"]


class Task(ABC):
    """A family of questions with checkable answers.

    Subclasses set :attr:`name` (the spec rows carry), :attr:`summary` (one line for ``nlft
    tasks``), :attr:`solve_template` (``{question}``) and :attr:`judge_instruction` (``{question}``,
    ``{output}``, ``{reference}``), and implement the three methods below. ``stops_at_answer`` says
    whether generation may stop after the ``#### answer`` line (false where the answer is a block of
    code).
    """

    name: str = ""
    summary: str = ""
    solve_template: str = ""
    judge_instruction: str = ""
    stops_at_answer: bool = True

    @abstractmethod
    def extract(self, output: str | None, mode: Mode = "strict") -> str | None:
        """The final answer read from ``output`` in this task's canonical form, or ``None``.

        ``strict`` reads only the format the solve prompt asks for; ``flexible`` also reads the
        phrasings models use instead.
        """

    @abstractmethod
    def is_correct(self, output: str | None, row: dict[str, Any], mode: Mode = "strict") -> bool:
        """Whether ``output`` answers ``row`` (its ``gold`` and ``meta``) correctly."""

    @abstractmethod
    def rule_judgment(self, output: str, row: dict[str, Any]) -> str:
        """A plain-words judgment of a wrong ``output`` written without a model; never empty."""

    def describe(self) -> dict[str, Any]:
        """What goes into provenance."""
        return {"task": self.name}
