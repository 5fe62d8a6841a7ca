"""The short-text task: answers that are a word or a phrase, checked by normalised exact match.

A JSONL/CSV file with ``--answer-type text``: each answer is the expected text (or a list of
accepted texts in JSONL, the first the standard one). Matching ignores case, punctuation, articles
(``the``, ``a``, ``an``) and extra spaces by default; ``text:case=true`` keeps case,
``text:punct=true`` keeps punctuation, ``text:articles=true`` keeps articles.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from nlft.tasks import answers
from nlft.tasks._rows import FileTask, Where, answer_text, task_row
from nlft.tasks.base import Mode, no_answer, quoted, tidy
from nlft.tasks.prompts import CORRECT_JUDGMENT, task_prompts

OPTIONS = ("case", "punct", "articles")
_ARTICLES_RE = re.compile(r"\b(?:the|a|an)\b", re.I)


def normalize_text(text: str, *, case: bool = False, punct: bool = False, articles: bool = False) -> str:
    """``text`` as compared: Unicode NFKC, then lower case (unless ``case``), punctuation removed (unless
    ``punct``), articles removed (unless ``articles``), runs of spaces made one.

    >>> normalize_text("  The Eiffel-Tower! ")
    'eiffel tower'
    """
    s = unicodedata.normalize("NFKC", text)
    if not case:
        s = s.lower()
    if not punct:
        s = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in s)
    if not articles:
        s = _ARTICLES_RE.sub(" ", s)
    return " ".join(s.split())


class TextTask(FileTask):
    """A word or phrase, equal to the gold one after normalisation."""

    summary = "a short text (JSONL/CSV): normalised exact match; text:case=true, punct=true, articles=true"
    solve_template, brief_template, judge_instruction = task_prompts(
        "question", "<answer>", "a careful grader", "a question", "Question")

    def __init__(self, case: bool = False, punct: bool = False, articles: bool = False) -> None:
        self.case, self.punct, self.articles = case, punct, articles
        kept = [f"{k}=true" for k, v in zip(OPTIONS, (case, punct, articles)) if v]
        self.name = "text" + (":" + ",".join(kept) if kept else "")

    def norm(self, text: str) -> str:
        """``text`` normalised with this task's options."""
        return normalize_text(text, case=self.case, punct=self.punct, articles=self.articles)

    def extract(self, output: str | None, mode: Mode = "strict") -> str | None:
        """The answer text (``####`` line; flexible: also ``\\boxed{}``, phrasings, the last line)."""
        return answers.first_answer(output, mode)

    def accepted(self, row: dict[str, Any]) -> list[str]:
        """The gold and the row's other accepted answers (``meta["aliases"]``)."""
        return [str(row["gold"]), *row.get("meta", {}).get("aliases", [])]

    def is_correct(self, output: str | None, row: dict[str, Any], mode: Mode = "strict") -> bool:
        """Whether the answer read from ``output`` equals an accepted answer, normalised."""
        found = self.extract(output, mode)
        return found is not None and self.norm(found) in {self.norm(a) for a in self.accepted(row)}

    def rule_judgment(self, output: str, row: dict[str, Any], mode: Mode = "strict") -> str:
        """States the answer given (as ``mode`` reads it) and the right one."""
        gold = row["gold"]
        found = self.extract(output, mode)
        if found is None:
            loose = self.extract(output, "flexible") if mode == "strict" else None
            seen = f" (its last line reads {quoted(loose)})" if loose else ""
            return tidy(f"{no_answer(mode, '<answer>', row, seen)}; the correct answer is {quoted(gold)}.")
        if self.norm(found) in {self.norm(a) for a in self.accepted(row)}:
            return CORRECT_JUDGMENT
        return tidy(f"The response answers {quoted(found)}, but the correct answer is {quoted(gold)}.")

    def build_row(self, row_id: str, question: str, answer: Any, raw: dict[str, Any], where: Where) -> dict[str, Any]:
        """A text row; a list answer gives the standard answer and its accepted variants."""
        texts = [answer_text(t, where) for t in (answer if isinstance(answer, list) and answer else [answer])]
        gold = answers.hash_answer(texts[0]) if "####" in texts[0] else texts[0]
        if not gold or not self.norm(gold):
            raise where.error(f"the answer {texts[0][:60]!r} is empty once normalised")
        reference = texts[0] if "####" in texts[0] else f"#### {gold}"
        return task_row(row_id, question, reference, gold, self.name, {"aliases": texts[1:]} if len(texts) > 1 else {})
