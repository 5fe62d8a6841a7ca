"""Reading question files as they are published: JSONL or a JSON array, nested fields, templates, label sets, chat.

A :class:`FieldMap` says where a row's question, answer and choices are:

- a field path: ``answerKey``, ``question.stem`` (a field of a field), ``answer.aliases``, ``choices[0]``;
  ``question.choices[].text`` is the ``text`` of every item of a list;
- a question template joining several fields: ``"{Body} {Question}"``,
  ``"Premise: {sentence1}\\nHypothesis: {sentence2}"`` (``\\n`` written as two characters is a new line);
- choices whose items carry their own labels (ARC's ``{"text": ..., "label": "1"}``): the answer key is read
  against those labels (``"1"`` is the first option when the labels are ``1``-``4``);
- a label set (NLI's ``entailment, neutral, contradiction``): the labels become every row's choices and the
  answer is a label or its 0-based index; rows whose label is missing or none of the set (SNLI's ``-``,
  ``-1``) are dropped and counted (:attr:`Rows.dropped`);
- ``messages`` (chat JSONL as TRL, Axolotl and LLaMA-Factory keep it): the last user turn before the last
  assistant turn is the question, that assistant turn the answer.

The file is JSONL (one object a line) or a JSON array of objects (``.json``); errors name the file, the line
(JSONL) or the row (array) and the field.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

from nlft.utils.files import DataError, iter_jsonl

__all__ = ["FieldMap", "Record", "get_path", "iter_records", "map_record"]

_PLACEHOLDER_RE = re.compile(r"\{([^{}]+)\}")
_STEP_RE = re.compile(r"([^.\[\]]+)|\[(\d*)\]")
MISSING = object()
LETTERS = string.ascii_uppercase


@dataclass(frozen=True)
class FieldMap:
    """Where the question, answer, choices and id of a source row are (see the module docstring)."""

    question: str = "question"
    answer: str = "answer"
    choices: str | None = None  # None: the row's "choices" for a choice task
    labels: tuple[str, ...] | None = None  # a label set: every row's choices
    id: str | None = None  # None: the row's "id" (or "task_id"), else the file's name and a count

    @classmethod
    def from_file(cls, path: str | Path) -> FieldMap:
        """A field map from a YAML or JSON file with any of the keys ``question``, ``answer``, ``choices``,
        ``labels`` (a list or a comma-separated text) and ``id``."""
        import yaml

        try:
            spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise DataError(f"cannot read the field map ({err})", path=path) from None
        if not isinstance(spec, dict):
            raise DataError("a field map is a mapping of question, answer, choices, labels, id", path=path)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise DataError(f"unknown keys {unknown}; use {', '.join(sorted(known))}", path=path)
        return cls().with_options(**spec)

    def with_options(self, **options: Any) -> FieldMap:
        """This map with the options given (None: unchanged); ``labels`` may be a comma-separated text."""
        options = {k: v for k, v in options.items() if v is not None}
        labels = options.get("labels")
        if isinstance(labels, str):
            labels = [x.strip() for x in labels.split(",")]
        if labels is not None:
            if not isinstance(labels, list) or len(labels) < 2 or not all(str(x).strip() for x in labels):
                raise ValueError(f"a label set needs two or more labels, got {labels!r}")
            options["labels"] = tuple(str(x).strip() for x in labels)
        return replace(self, **options)


class Record(NamedTuple):
    """One source row and where it is: ``line`` in a JSONL file, ``row`` (1-based) in a JSON array."""

    raw: dict[str, Any]
    line: int | None
    row: int | None

    def error(self, message: str, path: Any, field: str | None = None) -> DataError:
        """A DataError naming the file, the line or row, and ``field``."""
        return DataError(message, path=path, line=self.line, row=self.row, field=field)


def iter_records(path: str | Path) -> Iterator[Record]:
    """The objects of a JSONL file, or of a JSON array (a file starting with ``[``), with where each is."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip()
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip()
    if not head.startswith(b"["):
        for number, raw in iter_jsonl(path):
            yield Record(raw, number, None)
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise DataError(f"malformed JSON ({err.msg} at line {err.lineno}, column {err.colno})", path=path) from None
    except UnicodeDecodeError:
        raise DataError("not valid UTF-8", path=path) from None
    for index, raw in enumerate(data, start=1):
        if not isinstance(raw, dict):
            raise DataError(f"expected a JSON object, got {type(raw).__name__}", path=path, row=index)
        yield Record(raw, None, index)


def get_path(raw: Any, path: str) -> Any:
    """The value at a field path (``question.stem``, ``choices[0]``, ``question.choices[].text``), or
    :data:`MISSING`. A plain field name that holds dots (``"a.b"``) is read as that name first."""
    if isinstance(raw, dict) and path in raw:
        return raw[path]
    value = raw
    steps = [m.group(1) if m.group(1) is not None else f"[{m.group(2)}]" for m in _STEP_RE.finditer(path)]
    for i, step in enumerate(steps):
        if step == "[]":
            if not isinstance(value, list):
                return MISSING
            rest = ".".join(steps[i + 1:]).replace(".[", "[")
            items = [get_path(item, rest) if rest else item for item in value]
            return MISSING if any(item is MISSING for item in items) else items
        if step.startswith("["):
            index = int(step[1:-1])
            if not isinstance(value, list) or index >= len(value):
                return MISSING
            value = value[index]
        elif isinstance(value, dict) and step in value:
            value = value[step]
        else:
            return MISSING
    return value


def _text(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return value if isinstance(value, str) else None


def _question(fmap: FieldMap, rec: Record, path: Any) -> Any:
    if "{" not in fmap.question:
        value = get_path(rec.raw, fmap.question)
        return None if value is MISSING else value

    def fill(m: re.Match[str]) -> str:
        text = _text(get_path(rec.raw, m.group(1).strip()))
        if text is None:
            raise rec.error("missing or not a text (in the question template)", path, m.group(1).strip())
        return text

    return _PLACEHOLDER_RE.sub(fill, fmap.question.replace("\\n", "\n"))


def _chat(rec: Record, path: Any) -> tuple[str, str]:
    """(question, answer) of a ``messages`` row: the last user turn before the last assistant turn, and that turn."""
    turns = rec.raw["messages"]
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise rec.error("must be a list of {'role', 'content'} turns", path, "messages")
    last = max((i for i, t in enumerate(turns) if t.get("role") == "assistant"), default=None)
    if last is None:
        raise rec.error("no assistant turn (the answer)", path, "messages")
    user = max((i for i, t in enumerate(turns[:last]) if t.get("role") == "user"), default=None)
    if user is None:
        raise rec.error("no user turn before the assistant's (the question)", path, "messages")
    question, answer = turns[user].get("content"), turns[last].get("content")
    for what, value, i in (("user", question, user), ("assistant", answer, last)):
        if not isinstance(value, str) or not value.strip():
            raise rec.error(f"the {what} turn has no text content", path, f"messages[{i}].content")
    return question, answer


def _labelled_choices(fmap: FieldMap, rec: Record, path: Any) -> tuple[Any, list[str] | None]:
    """The row's choices and, where its items carry them, their own labels."""
    where = fmap.choices or "choices"
    value = get_path(rec.raw, where)
    if value is MISSING:
        return None, None
    labels = None
    if isinstance(value, list) and value and all(isinstance(v, dict) and "text" in v for v in value):
        labels = [_text(v.get("label")) for v in value] if all("label" in v for v in value) else None
        value = [v["text"] for v in value]
    elif where.endswith("[].text"):
        found = get_path(rec.raw, where[:-len("text")] + "label")
        labels = [_text(x) for x in found] if isinstance(found, list) else None
    if labels is not None and (None in labels or len(set(labels)) != len(labels)):
        raise rec.error(f"the choices' labels must be distinct texts, got {labels}", path, where)
    return value, labels  # type: ignore[return-value]


def map_record(fmap: FieldMap, rec: Record, *, path: Any, answer_type: str) -> tuple[Any, Any, dict[str, Any]] | None:
    """``(question, answer, raw)`` of a source row as the task's ``make_row`` takes them (``raw`` with the row's
    ``choices`` as a list where it has any), or None for a row a label set drops (label missing or none of them).

    A ``messages`` row (when the question field is absent) is read as a chat; a choice answer that is one of the
    choices' own labels becomes the letter of that position.
    """
    raw = rec.raw
    if "messages" in raw and get_path(raw, fmap.question) is MISSING and "{" not in fmap.question:
        question, answer = _chat(rec, path)
        if answer_type == "number" and "####" not in answer:
            from nlft.tasks.grading import extract_answer

            final = extract_answer(answer, "flexible")
            if final is not None:
                answer = f"{answer.rstrip()}\n#### {final}"
        return question, answer, raw
    question = _question(fmap, rec, path)
    answer = get_path(raw, fmap.answer)
    answer = None if answer is MISSING else answer
    if fmap.labels is not None:
        label = _text(answer)
        if label is not None and label.strip() in fmap.labels:
            answer = LETTERS[fmap.labels.index(label.strip())]
        elif isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(fmap.labels):
            answer = LETTERS[answer]
        else:
            return None
        return question, answer, {**raw, "choices": list(fmap.labels)}
    if answer_type != "choice":
        return question, answer, raw
    choices, labels = _labelled_choices(fmap, rec, path)
    if labels is not None and _text(answer) is not None and _text(answer).strip() in labels:  # type: ignore[union-attr]
        answer = LETTERS[labels.index(_text(answer).strip())]  # type: ignore[union-attr]
    return question, answer, {**raw, "choices": choices}
