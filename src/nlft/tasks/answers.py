"""Reading a final answer out of an output, for tasks whose answers are not plain numbers.

``strict`` reads only the form every solve prompt asks for: the text after the last ``####`` on
its line. ``flexible`` also reads the phrasings models write instead, latest-written first within
each kind, in this order of trust: the ``####`` line, ``\\boxed{...}``, ``<answer>...</answer>``
(reasoning-gym's format), "the (final) answer is X", an ``Answer: X`` line, and, last, the last
non-empty line of the output. Each reader returns the answer's text, stripped of the decoration
around it (bold, quotes, ``$...$``), or ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from nlft.tasks.base import Mode

_HASH_LINE_RE = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_TAG_RE = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.S | re.I)
_ANSWER_IS_RE = re.compile(r"\b(?:final\s+)?answer\s+(?:is|would\s+be|will\s+be)\s*:?[ \t]*([^\n]+)", re.I)
_ANSWER_LABEL_RE = re.compile(r"^[ \t*#>-]*(?:final\s+)?answer\s*[:：][ \t]*([^\n]+)", re.I | re.M)
_MAX_ANSWER_CHARS = 500


def clean(text: str | None) -> str | None:
    """An answer without the decoration models put around it: ``**B**`` -> ``B``, ``"Paris".`` -> ``Paris``.

    Strips surrounding whitespace, markdown bold/italics and code quotes, matching quotes, ``$...$``,
    and a trailing full stop after a word. Returns ``None`` for an empty result.
    """
    if text is None:
        return None
    s = text.strip()
    for _ in range(4):
        before = s
        s = s.strip().strip("*_`").strip()
        if s.endswith(".") and not s.endswith("..") and len(s) > 1 and not s[-2].isdigit():
            s = s[:-1].rstrip()
        if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'$":
            s = s[1:-1].strip()
        if len(s) >= 4 and s.startswith("\\(") and s.endswith("\\)"):
            s = s[2:-2].strip()
        if s == before:
            break
    return s or None


def hash_answer(text: str | None) -> str | None:
    """The text after the last ``####`` of ``text`` on its line (cleaned), or ``None``."""
    if not text:
        return None
    for found in reversed(_HASH_LINE_RE.findall(text)):
        answer = clean(found)
        if answer:
            return answer[:_MAX_ANSWER_CHARS]
    return None


def boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (nested braces allowed), or ``None``."""
    start = text.rfind("\\boxed{")
    while start != -1:
        depth, i = 0, start + len("\\boxed")
        for j in range(i, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    inner = text[i + 1:j].strip()
                    if inner:
                        return inner
                    break
        start = text.rfind("\\boxed{", 0, start)
    return None


def _matches(pattern: re.Pattern[str], text: str) -> list[tuple[int, str]]:
    """``(start, group 1)`` of every match of ``pattern``, overlapping ones too: in "the answer is A, no, the
    answer is B" the second statement is read on its own, not only as the tail of the first."""
    out, pos = [], 0
    while (m := pattern.search(text, pos)) is not None:
        out.append((m.start(), m.group(1)))
        pos = m.start() + 1
    return out


def _last(pattern: re.Pattern[str], text: str) -> str | None:
    for _, found in reversed(_matches(pattern, text)):
        answer = clean(found)
        if answer:
            return answer
    return None


def _last_line(text: str) -> str | None:
    for line in reversed(text.strip().splitlines()):
        answer = clean(line.lstrip("# \t"))  # a bare '####' (or a heading's marks) is no answer
        if answer:
            return answer
    return None


def last_line(text: str | None) -> str | None:
    """The last non-empty line of ``text``, cleaned (the weakest reading of an answer), or ``None``."""
    return _last_line(text) if text else None


def statements(text: str | None, mode: Mode = "strict") -> list[str]:
    """Every answer ``text`` states in so many words, each occurrence, in the order written: the ``####`` lines
    (strict), and with ``flexible`` also ``\\boxed{}``, ``<answer>`` tags, "the answer is X" and ``Answer: X``
    lines. The last line is no statement. An output that states several different answers commits to none of
    them when they cover every option of a question (see :mod:`nlft.tasks.choice`)."""
    if not text:
        return []
    patterns = [_HASH_LINE_RE] + ([_ANSWER_TAG_RE, _ANSWER_IS_RE, _ANSWER_LABEL_RE] if mode == "flexible" else [])
    found = [match for p in patterns for match in _matches(p, text)]
    box = boxed(text) if mode == "flexible" else None
    if box:
        found.append((text.rfind("\\boxed{"), box))
    return [a[:_MAX_ANSWER_CHARS] for _, f in sorted(found) if (a := clean(f))]


def candidates(text: str | None, mode: Mode = "strict", *, with_last_line: bool = True) -> Iterator[str]:
    """Every answer ``text`` states, most trusted first: ``####`` only when strict, every phrasing when flexible
    (``with_last_line``: the last line too, as the weakest)."""
    if mode not in ("strict", "flexible"):
        raise ValueError(f"unknown extraction mode {mode!r}; choose 'strict' or 'flexible'")
    if not text:
        return
    readers: list[Callable[[str], str | None]] = [hash_answer]
    if mode == "flexible":
        readers += [boxed, lambda t: _last(_ANSWER_TAG_RE, t), lambda t: _last(_ANSWER_IS_RE, t),
                    lambda t: _last(_ANSWER_LABEL_RE, t)] + ([_last_line] if with_last_line else [])
    for read in readers:
        found = read(text)
        if found:
            yield found[:_MAX_ANSWER_CHARS]


def first_answer(text: str | None, mode: Mode = "strict",
                 accept: Callable[[str], str | None] = lambda s: s) -> str | None:
    """The first of :func:`candidates` that ``accept`` turns into an answer (``accept`` returns None to refuse)."""
    for found in candidates(text, mode):
        value = accept(found)
        if value is not None:
            return value
    return None
