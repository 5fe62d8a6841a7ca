"""The short-text task: answers that are a word or a phrase, checked by normalised exact match (the default).

A JSONL/CSV file with ``--answer-type text``: each answer is the expected text (or a list of
accepted texts in JSONL, the first the standard one). Matching ignores case, punctuation, articles
(``the``, ``a``, ``an``) and extra spaces, and reads number words as digits (``one`` = ``1``,
``twenty-one`` = ``21``, ``1,000`` = ``1000``) by default; ``text:case=true`` keeps case,
``text:punct=true`` keeps punctuation, ``text:articles=true`` keeps articles, ``text:numbers=true``
keeps number words as written.

``text:match=contains`` credits an answer that contains an accepted answer as whole words ("... was
James I." contains "James I"), as open-domain QA evaluations of generated answers do; the default,
``match=exact``, is SQuAD's exact match after normalisation. Containment credits an answer that lists
several candidates, so it suits questions whose outputs are one sentence.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from nlft.tasks import answers
from nlft.tasks._rows import FileTask, Where, answer_text, task_row
from nlft.tasks.base import Mode, no_answer, quoted, tidy
from nlft.tasks.prompts import CORRECT_JUDGMENT, task_prompts

OPTIONS = ("case", "punct", "articles", "numbers")
MATCHES = ("exact", "contains")
_ARTICLES_RE = re.compile(r"\b(?:the|a|an)\b", re.I)
_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = {w: 10 * i for i, w in enumerate(
    ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"], start=2)}
_UNIT_VALUE = {w: i for i, w in enumerate(_UNITS)}


def _digits(tokens: list[str]) -> list[str]:
    """Number words as digits: ``twenty one`` -> ``21``, ``Seven`` -> ``7``; other tokens as they are."""
    out: list[str] = []
    after_tens = False  # the last token was a tens word, which a unit word completes ("twenty" "one")
    for tok in tokens:
        low = tok.lower()
        unit = _UNIT_VALUE.get(low)
        if unit is not None and after_tens and 1 <= unit <= 9:
            out[-1] = str(int(out[-1]) + unit)
        elif unit is not None:
            out.append(str(unit))
        else:
            out.append(str(_TENS[low]) if low in _TENS else tok)
        after_tens = low in _TENS
    return out


def normalize_text(text: str, *, case: bool = False, punct: bool = False, articles: bool = False,
                   numbers: bool = False) -> str:
    """``text`` as compared: Unicode NFKC, thousands commas dropped, then lower case (unless ``case``),
    punctuation removed (unless ``punct``), articles removed (unless ``articles``), number words as digits
    (unless ``numbers``), runs of spaces made one.

    >>> normalize_text("  The Eiffel-Tower! ")
    'eiffel tower'
    >>> normalize_text("Twenty-one guns")
    '21 guns'
    """
    s = unicodedata.normalize("NFKC", text)
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)
    if not case:
        s = s.lower()
    if not punct:
        s = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in s)
    if not articles:
        s = _ARTICLES_RE.sub(" ", s)
    tokens = s.split() if numbers else _digits(s.split())
    return " ".join(tokens)


def _contains(answer: str, accepted: str) -> bool:
    """Whether the normalised ``accepted`` is a run of whole words of the normalised ``answer``."""
    return bool(accepted) and f" {accepted} " in f" {answer} "


class TextTask(FileTask):
    """A word or phrase, equal to the gold one after normalisation."""

    summary = ("a short text (JSONL/CSV): normalised exact match (number words as digits); text:match=contains, "
               "case=true, punct=true, articles=true, numbers=true")
    solve_template, brief_template, judge_instruction = task_prompts(
        "question", "<answer>", "a careful grader", "a question", "Question")

    def __init__(self, case: bool = False, punct: bool = False, articles: bool = False, numbers: bool = False,
                 match: str = "exact") -> None:
        if match not in MATCHES:
            raise ValueError(f"text matching is match=exact or match=contains, got {match!r}")
        self.case, self.punct, self.articles, self.numbers, self.match = case, punct, articles, numbers, match
        kept = [f"{k}=true" for k, v in zip(OPTIONS, (case, punct, articles, numbers)) if v]
        kept += [f"match={match}"] if match != "exact" else []
        self.name = "text" + (":" + ",".join(kept) if kept else "")

    def norm(self, text: str) -> str:
        """``text`` normalised with this task's options."""
        return normalize_text(text, case=self.case, punct=self.punct, articles=self.articles, numbers=self.numbers)

    def matches(self, found: str, row: dict[str, Any]) -> bool:
        """Whether the answer ``found`` is one of the row's accepted answers (``match=contains``: contains one)."""
        said, accepted = self.norm(found), {self.norm(a) for a in self.accepted(row)}
        return said in accepted or (self.match == "contains" and any(_contains(said, a) for a in accepted))

    def extract(self, output: str | None, mode: Mode = "strict") -> str | None:
        """The answer text (``####`` line; flexible: also ``\\boxed{}``, phrasings, the last line)."""
        return answers.first_answer(output, mode)

    def accepted(self, row: dict[str, Any]) -> list[str]:
        """The gold and the row's other accepted answers (``meta["aliases"]``)."""
        return [str(row["gold"]), *row.get("meta", {}).get("aliases", [])]

    def is_correct(self, output: str | None, row: dict[str, Any], mode: Mode = "strict") -> bool:
        """Whether the answer read from ``output`` equals an accepted answer, normalised."""
        found = self.extract(output, mode)
        return found is not None and self.matches(found, row)

    def rule_judgment(self, output: str, row: dict[str, Any], mode: Mode = "strict") -> str:
        """States the answer given (as ``mode`` reads it) and the right one."""
        gold = row["gold"]
        found = self.extract(output, mode)
        if found is None:
            loose = self.extract(output, "flexible") if mode == "strict" else None
            seen = f" (its last line reads {quoted(loose)})" if loose else ""
            return tidy(f"{no_answer(mode, '<answer>', row, seen)}; the correct answer is {quoted(gold)}.")
        if self.matches(found, row):
            return CORRECT_JUDGMENT
        if self.match == "contains":
            return tidy(f"The response answers {quoted(found)}, which does not contain the correct answer "
                        f"{quoted(gold)}.")
        return tidy(f"The response answers {quoted(found)}, but the correct answer is {quoted(gold)}.")

    def build_row(self, row_id: str, question: str, answer: Any, raw: dict[str, Any], where: Where) -> dict[str, Any]:
        """A text row; a list answer gives the standard answer and its accepted variants."""
        texts = [answer_text(t, where) for t in (answer if isinstance(answer, list) and answer else [answer])]
        gold = answers.hash_answer(texts[0]) if "####" in texts[0] else texts[0]
        if not gold or not self.norm(gold):
            raise where.error(f"the answer {texts[0][:60]!r} is empty once normalised")
        reference = texts[0] if "####" in texts[0] else f"#### {gold}"
        return task_row(row_id, question, reference, gold, self.name, {"aliases": texts[1:]} if len(texts) > 1 else {})
