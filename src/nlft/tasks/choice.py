"""The multiple-choice task: a JSONL file with ``choices``; answers are letters.

A row's ``choices`` is a list of option texts (lettered A, B, C, ...) or a dict letter -> text;
its answer is a letter (``"B"``), a 0-based index (``1``, as MMLU and ARC store it) or the text of
a choice (``"Paris"``). The question shown to the model lists the options (``A) Paris``); the
standard answer reads "The answer is (B) Paris"; the gold is the letter.

An output names an option by its letter (``#### B``, ``(B)``, ``B) Paris``, ``Answer: b``), by its
number counted from 1 (``option 2``), or by its text. Strict reading takes the ``####`` line only.
"""

from __future__ import annotations

import re
import string
from typing import Any

from nlft.tasks import answers
from nlft.tasks._rows import FileTask, Where, task_row
from nlft.tasks.base import Mode, no_answer, tidy
from nlft.tasks.prompts import CORRECT_JUDGMENT, task_prompts

LETTERS = string.ascii_uppercase
_LETTER_RE = re.compile(r"^\(?\[?([A-Za-z])\s*(?:[).:\]]|$|\s+[-–—:]?\s*)(.*)$", re.S)
_OPTION_RE = re.compile(r"^(?:option|choice)\s*\(?([A-Za-z]|\d+)\)?(?![\w])", re.I)
_OPTION_LINE_RE = re.compile(r"^[ \t*]*\(?([A-Z])[).:][ \t]+\S", re.M)
_OPTION_MENTION_RE = re.compile(r"\b(?:option|choice)\s*\(?(?:[A-Za-z]|\d+)\)?(?![\w])", re.I)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def read_letter(text: str | None, choices: list[str]) -> str | None:
    """The option ``text`` names (a letter of ``choices``), or ``None``.

    Reads ``B``, ``(B)``, ``b)``, ``B. Paris``, ``B: Paris``, ``option 2`` / ``choice B`` (numbers
    count from 1), ``[B]`` and the bare text of a choice (``Paris``). A letter outside the choices
    is no answer.

    >>> read_letter("(B) London", ["Paris", "London"])
    'B'
    """
    if not text:
        return None
    s = answers.clean(text) or ""
    s = re.sub(r"^(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s*(?:is|:)\s*", "", s, flags=re.I).strip()
    letters = LETTERS[:len(choices)]
    m = _OPTION_RE.match(s)
    if m:
        token = m.group(1)
        if token.isdigit():
            return letters[int(token) - 1] if 1 <= int(token) <= len(choices) else None
        return token.upper() if token.upper() in letters else None
    m = _LETTER_RE.match(s)
    if m and m.group(1).upper() in letters:
        rest = _norm(m.group(2))
        letter = m.group(1).upper()
        # "B) Paris": the text after the letter, when there is one, must be that option's (or nothing).
        # A lowercase letter followed by words is a sentence ("a city ...") unless the words are the option's.
        if not rest or rest == _norm(choices[letters.index(letter)]):
            return letter
        if m.group(1).isupper() and re.match(r"^\(?[A-Z][).:]", s):
            return letter
    wanted = _norm(s)
    for letter, choice in zip(letters, choices):
        if wanted and wanted == _norm(choice):
            return letter
    return None


def row_choices(row: dict[str, Any]) -> list[str]:
    """The option texts of a choice row (its ``meta["choices"]``)."""
    return list(row.get("meta", {}).get("choices") or [])


class ChoiceTask(FileTask):
    """Multiple-choice questions; the answer is the letter of an option."""

    name = "choice"
    summary = "multiple choice (JSONL with 'choices'): the letter (B), the option number or its text"
    solve_template, brief_template, judge_instruction = task_prompts(
        "multiple-choice question", "<letter>", "a careful grader", "a multiple-choice question", "Question")

    def extract(self, output: str | None, mode: Mode = "strict", choices: list[str] | None = None) -> str | None:
        """The letter ``output`` chooses. Without ``choices`` any letter A-Z (and ``option N``) is read."""
        options = choices if choices is not None else [""] * len(LETTERS)
        found = answers.first_answer(output, mode, lambda s: read_letter(s, options))
        if found is None and mode == "flexible" and output:
            # "B) Paris" at the start of a line, else the last "option 2" / "choice B" mentioned
            lines = [x for x in _OPTION_LINE_RE.findall(output) if x in LETTERS[:len(options)]]
            mentions = [read_letter(m.group(0), options) for m in _OPTION_MENTION_RE.finditer(output)]
            found = lines[-1] if lines else next((x for x in reversed(mentions) if x), None)
        return found

    def is_correct(self, output: str | None, row: dict[str, Any], mode: Mode = "strict") -> bool:
        """Whether ``output`` chooses the row's gold letter."""
        return self.extract_for_row(output, row, mode) == str(row["gold"]).upper()

    def extract_for_row(self, output: str | None, row: dict[str, Any], mode: Mode = "strict") -> str | None:
        """The letter ``output`` chooses among the row's options (None for a letter that is none of them)."""
        return self.extract(output, mode, row_choices(row) or None)

    def rule_judgment(self, output: str, row: dict[str, Any], mode: Mode = "strict") -> str:
        """Names the option chosen (as ``mode`` reads it) and the right one."""
        choices = row_choices(row)
        gold = str(row["gold"]).upper()
        right = f"({gold}) {choices[LETTERS.index(gold)]}" if choices else f"({gold})"
        chosen = self.extract(output, mode, choices or None)
        if chosen is None:
            loose = self.extract(output, "flexible", choices or None) if mode == "strict" else None
            seen = f" (it seems to choose {self._option(loose, choices)})" if loose else ""
            return tidy(f"{no_answer(mode, '<letter>', row, seen)}; the right option is {right}.")
        if chosen == gold:
            return CORRECT_JUDGMENT
        return tidy(f"The response chooses {self._option(chosen, choices)}, but the right option is {right}.")

    @staticmethod
    def _option(letter: str, choices: list[str]) -> str:
        i = LETTERS.index(letter)
        return f"({letter}) {choices[i]}" if i < len(choices) else f"({letter})"

    def build_row(self, row_id: str, question: str, answer: Any, raw: dict[str, Any], where: Where) -> dict[str, Any]:
        """A choice row: the question with its lettered options, the gold letter, "The answer is (B) Paris"."""
        choices = _choices_of(raw.get("choices"), where)
        letters = LETTERS[:len(choices)]
        gold = None
        if isinstance(answer, int) and not isinstance(answer, bool):
            gold = letters[answer] if 0 <= answer < len(choices) else None
        elif isinstance(answer, str) and answer.strip():
            text = answer.strip()
            if text.isdigit():
                gold = letters[int(text)] if int(text) < len(choices) else None
            elif len(text) == 1 and text.upper() in LETTERS:
                gold = text.upper() if text.upper() in letters else None
            else:
                gold = read_letter(text, choices)
        if gold is None:
            raise where.error(f"the answer {answer!r} is not among the {len(choices)} choices (a letter "
                              f"{letters[0]}-{letters[-1]}, a 0-based index or a choice's text)")
        shown = question + "\n\n" + "\n".join(f"{x}) {c}" for x, c in zip(letters, choices))
        reference = f"The answer is ({gold}) {choices[letters.index(gold)]}\n#### {gold}"
        return task_row(row_id, shown, reference, gold, self.name, {"choices": choices})


def _choices_of(raw: Any, where: Where) -> list[str]:
    """A row's ``choices`` as a list of option texts: a list, or a dict letter -> text in letter order."""
    if isinstance(raw, dict):
        keys = sorted(str(k).strip().upper() for k in raw)
        if keys != list(LETTERS[:len(keys)]):
            raise where.error(f"choice letters must be A, B, C, ... in order, got {sorted(raw)}", "choices")
        by_letter = {str(k).strip().upper(): v for k, v in raw.items()}
        raw = [by_letter[k] for k in keys]
    if not isinstance(raw, list) or len(raw) < 2 or len(raw) > len(LETTERS):
        raise where.error("needs 'choices': a list of 2 to 26 option texts (or a dict letter -> text)", "choices")
    out = []
    for item in raw:
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str) or not item.strip():
            raise where.error("every choice must be a non-empty text", "choices")
        out.append(item.strip())
    return out
