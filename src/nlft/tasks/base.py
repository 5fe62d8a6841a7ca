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

import re
from abc import ABC, abstractmethod
from typing import Any, Literal

Mode = Literal["strict", "flexible"]
# '#### <something>' and the end of its line: the answer line every solve prompt asks for.
ANSWER_LINE = r"####[ \t]*\S[^\n]*(?:\n|$)"
# The prompt names of ``--prompt``: for the number task they are the paper's three prompts.
PROMPT_NAMES = ("solve", "base", "brief")


class Task(ABC):
    """A family of questions with checkable answers.

    Subclasses set :attr:`name` (the spec rows carry), :attr:`summary` (one line for ``nlft
    tasks``), :attr:`solve_template` (``{question}``) and :attr:`judge_instruction` (``{question}``,
    ``{output}``, ``{reference}``), and implement the three methods below. ``stops_at_answer`` says
    whether generation may stop after the ``#### answer`` line (false where the answer is a block of
    code).

    Optional, with defaults: :attr:`brief_template` (``--prompt brief``), :attr:`answer_line` (where
    generation stops), :meth:`template` (a prompt by name), :meth:`extract_for_row` (the answer read
    for one question), :meth:`gold_of` (a row's gold, checked) and :meth:`reward` (ReFT's 1 / 0.1 / 0).
    """

    name: str = ""
    summary: str = ""
    solve_template: str = ""
    judge_instruction: str = ""
    stops_at_answer: bool = True
    # The short solve prompt of ``--prompt brief`` ("": the solve prompt).
    brief_template: str = ""
    # A complete answer line (a regular expression): with ``stops_at_answer`` generation ends after it.
    answer_line: str = ANSWER_LINE

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
    def rule_judgment(self, output: str, row: dict[str, Any], mode: Mode = "strict") -> str:
        """A plain-words judgment of a wrong ``output`` written without a model; never empty.

        ``mode`` is the grading that found the output wrong. The judgment says what is wrong under it:
        under ``"flexible"`` grading it judges the answer that flexible reading finds (its content),
        never the missing ``####`` line that only strict grading asks for, since X_judge would then
        make the format likely and unlikelihood would train the content away.
        """

    def describe(self) -> dict[str, Any]:
        """What goes into provenance."""
        return {"task": self.name}

    # ---- optional, with defaults ------------------------------------------------------------------

    def template(self, prompt: str | None = None) -> str:
        """The solve prompt called ``prompt`` (``solve``, ``base``, ``brief``; None: the task's default).

        ``brief`` gives :attr:`brief_template` where the task has one; every other name gives
        :attr:`solve_template`. The number task keeps the paper's three.
        """
        if prompt is not None and prompt not in PROMPT_NAMES:
            raise ValueError(f"unknown prompt {prompt!r}; choose one of {', '.join(PROMPT_NAMES)} or a template file")
        return self.brief_template if prompt == "brief" and self.brief_template else self.solve_template

    def extract_for_row(self, output: str | None, row: dict[str, Any], mode: Mode = "strict") -> str | None:
        """The answer read from ``output`` for the question ``row`` (what ``extracted`` records); default
        :meth:`extract`. A task whose reading depends on the question (the choices) overrides it."""
        return self.extract(output, mode)

    def gold_of(self, row: dict[str, Any], *, source: Any = "dataset", line: int | None = None) -> str:
        """The row's ``gold`` (a non-empty string); DataError naming ``source``, ``line`` and the field otherwise."""
        from nlft.utils.files import DataError

        gold = row.get("gold")
        if not isinstance(gold, str) or not gold.strip():
            raise DataError(f"a {self.name} row needs a non-empty string 'gold'", path=source, line=line, field="gold")
        return gold

    def reward(self, output: str | None, row: dict[str, Any], mode: Mode = "strict") -> float:
        """ReFT's reward: 1.0 for a correct answer, 0.1 for a readable wrong one, 0.0 when none is read."""
        if self.extract_for_row(output, row, mode) is None:
            return 0.0
        return 1.0 if self.is_correct(output, row, mode) else 0.1


def quoted(text: Any) -> str:
    """``text`` in single quotes as a person writes it in a judgment: no escape sequences, whitespace as one space.

    >>> quoted("54 Mbit/s,\\n  in all")
    "'54 Mbit/s, in all'"
    """
    return "'" + " ".join(str(text).split()) + "'"


def tidy(judgment: str) -> str:
    """A judgment with the doubled full stops that a value ending a sentence leaves ("is 5..") made one."""
    return re.sub(r"(?<!\.)\.\.(?!\.)", ".", judgment)


def truncated(row: dict[str, Any]) -> bool:
    """Whether the row's output stopped at the token limit it was generated with (``output_tokens`` reaching the
    provenance's ``sampling.max_new_tokens``): its end is cut off, not the model's last word."""
    limit = ((row.get("provenance") or {}).get("sampling") or {}).get("max_new_tokens")
    used = row.get("output_tokens")
    return isinstance(limit, int) and isinstance(used, int) and used >= limit


def no_answer(mode: Mode, form: str, row: dict[str, Any], seen: str = "") -> str:
    """The opening of a judgment when no answer can be read: under strict grading, the missing ``#### form`` line
    followed by ``seen`` (what a flexible reading finds, e.g. " (its last line reads 'Lima')"); under flexible
    grading, that no final answer is stated. Either way it says when the output was cut off at the token limit."""
    cut = " (it was cut off at the token limit before it finished)" if truncated(row) else ""
    if mode == "strict":
        return f"The response gives no final answer in the form '#### {form}'{seen}{cut}"
    return f"The response states no final answer{cut}"
