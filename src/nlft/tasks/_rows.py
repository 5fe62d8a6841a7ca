"""What the file-based tasks (math, choice, text) share: a row's place in its file, the answer cell, the row."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, NamedTuple

from nlft.tasks.base import Task
from nlft.utils.files import DataError


class Where(NamedTuple):
    """Where a row's answer is: the file, the line and the answer's field, for errors that name them."""

    path: Any
    line: int | None
    field: str

    def error(self, message: str, field: str | None = None) -> DataError:
        """A DataError naming the file, the line and ``field`` (default: the answer's)."""
        return DataError(message, path=self.path, line=self.line, field=field or self.field)


def answer_text(answer: Any, where: Where) -> str:
    """An answer cell as text (numbers become their decimal form), or DataError when missing or empty."""
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if not isinstance(answer, str) or not answer.strip():
        raise where.error("missing or empty answer")
    return answer.strip()


def task_row(row_id: str, question: str, reference: str, gold: str, task: str,
             meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """A row in the layout of :mod:`nlft.tasks.base`."""
    return {"id": row_id, "question": question, "reference": reference, "gold": gold, "task": task,
            "meta": meta or {}}


class FileTask(Task):
    """A task whose questions come from a JSONL/CSV file: :meth:`make_row` turns one question and answer into a row."""

    def make_row(self, question: Any, answer: Any, *, row_id: str, path: Any = None, line: int | None = None,
                 question_field: str = "question", answer_field: str = "answer",
                 raw: dict[str, Any] | None = None) -> dict[str, Any]:
        """A row from a question and its answer cell (``raw``: the whole source row); DataError naming the file,
        line and field when either is bad."""
        if not isinstance(question, str) or not question.strip():
            raise DataError("missing or empty question", path=path, line=line, field=question_field)
        return self.build_row(row_id, question.strip(), answer, raw or {}, Where(path, line, answer_field))

    @abstractmethod
    def build_row(self, row_id: str, question: str, answer: Any, raw: dict[str, Any], where: Where) -> dict[str, Any]:
        """The row of a checked question and its (unchecked) answer cell."""
