"""Answer extraction and grading: one set of pure functions for grading, evaluation and RL rewards.

``strict`` extraction reads the number after the last ``####`` (the GSM8K answer format the solve
instruction asks for); ``flexible`` extraction reads that number when there is one, else the last number
anywhere in the text that is not a list marker (the step number of ``6. Add them``; the bullet of ``- 51``
is no minus sign). Numbers are
normalised (commas, ``$``, trailing ``.0``, simple fractions) so that "1,000", "$1000.00" and "1000"
compare equal.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any, Literal

Mode = Literal["strict", "flexible"]

# A number as written in a solution: optional sign (against the number or its $) and $, digits with thousands
# commas, decimals, or a simple fraction a/b.
_NUMBER = r"-?(?:\$[ \t]?)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s?/\s?\d+(?:\.\d+)?)?|-?\$?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
_STRICT_RE = re.compile(r"####\s*(" + _NUMBER + r")")
# A list's step number at the start of a line, "6. " or "6) " with more text after it on that line.
_ENUMERATOR_RE = re.compile(r"^[ \t*>-]*\d+[.)][ \t]+\S", re.M)
_MAX_NUMBER_CHARS = 64
_BIG_EXPONENT_RE = re.compile(r"[eE][+-]?\d{3,}")


def normalize_number(s: str | None) -> str | None:
    """Canonical string of a number, or ``None`` when ``s`` is not a number.

    >>> normalize_number("$1,234.50")
    '1234.5'
    >>> normalize_number("3/4")
    '0.75'
    >>> normalize_number("-7.0")
    '-7'
    """
    if s is None:
        return None
    text = s.strip().rstrip(".").replace(",", "").replace("$", "").replace(" ", "")
    # No answer has this many characters or such an exponent; refusing them keeps Fraction from
    # building (or failing to print) integers of millions of digits.
    if not text or len(text) > _MAX_NUMBER_CHARS or _BIG_EXPONENT_RE.search(text):
        return None
    try:
        if "/" in text:
            num, _, den = text.partition("/")
            value = Fraction(num) / Fraction(den)
        else:
            value = Fraction(text)
        if value.denominator == 1:
            return str(value.numerator)
        # Finite decimals are written exactly; others rounded to 6 decimal places.
        as_float = float(value)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    out = f"{as_float:.6f}".rstrip("0").rstrip(".")
    return "0" if out == "-0" else out


def extract_answer(text: str | None, mode: Mode = "strict") -> str | None:
    """The normalised final answer of a solution, or ``None`` when none can be read.

    ``strict``: the number right after the last ``####``. ``flexible``: that number when there is one, else
    the last number in the text that is not a list's step number (``6. Add them``, ``2) Half``).

    >>> extract_answer("1. 3 * 4 = 12\\n2. So she has", "flexible")
    '12'
    """
    if not text:
        return None
    if mode == "strict":
        matches = _STRICT_RE.findall(text)
        return normalize_number(matches[-1]) if matches else None
    if mode == "flexible":
        stated = extract_answer(text, "strict")
        if stated is not None:
            return stated
        markers = {m.end() - 1 for m in _ENUMERATOR_RE.finditer(text)}  # where each step number's text starts
        for found in reversed(list(_NUMBER_RE.finditer(text))):
            if _is_enumerator(text, found.end(), markers):
                continue
            value = normalize_number(found.group())
            if value is not None:
                return value
        return None
    raise ValueError(f"unknown extraction mode {mode!r}; choose 'strict' or 'flexible'")


def _is_enumerator(text: str, end: int, markers: set[int]) -> bool:
    """Whether the number ending at ``end`` is a step number: ``6.`` or ``6)`` then spaces then the step's text."""
    rest = text[end:end + 40]
    m = re.match(r"[.)][ \t]+", rest)
    return m is not None and end + m.end() in markers


def gold_answer(reference: str) -> str:
    """The normalised gold number of a reference solution ending in ``#### N``.

    Raises ``ValueError`` when the reference has no readable ``#### N``.
    """
    value = extract_answer(reference, "strict")
    if value is None:
        raise ValueError("the reference has no final answer in the form '#### <number>'")
    return value


def gold_of(row: dict[str, Any], *, source: Any = "dataset", line: int | None = None) -> str:
    """The one rule for a row's gold answer: its ``gold``, else the ``#### N`` of its ``reference`` (or ``answer``).

    Returns the normalised number; raises :class:`~nlft.utils.files.DataError` naming ``source``,
    ``line`` and the field when there is none or it is not a number.
    """
    from nlft.utils.files import DataError

    gold = row.get("gold")
    if gold is None:
        reference = row.get("reference") or row.get("answer")
        if not isinstance(reference, str):
            raise DataError("needs 'gold' or a 'reference' ending in '#### N'", path=source, line=line, field="gold")
        try:
            gold = gold_answer(reference)
        except ValueError as err:
            raise DataError(str(err), path=source, line=line, field="reference") from None
    norm = normalize_number(str(gold))
    if norm is None:
        raise DataError(f"gold answer {gold!r} is not a number", path=source, line=line, field="gold")
    return norm


def _same_number(a: str, b: str) -> bool:
    if a == b:
        return True
    # Absolute, exact comparison: normalised numbers are rounded to 6 places, and a relative
    # tolerance would call 999999 and 1000000 equal.
    try:
        return abs(Fraction(a) - Fraction(b)) <= Fraction(1, 10**6)
    except (ValueError, ZeroDivisionError):
        return False


def is_correct(output: str | None, gold: str, mode: Mode = "strict") -> bool:
    """Whether the answer extracted from ``output`` equals ``gold`` (a number, normalised here too)."""
    predicted = extract_answer(output, mode)
    expected = normalize_number(gold)
    return predicted is not None and expected is not None and _same_number(predicted, expected)


def reft_reward(output: str | None, gold: str, mode: Mode = "strict") -> float:
    """ReFT reward: 1.0 for a correct final answer, 0.1 for an extractable wrong one, 0.0 otherwise."""
    if extract_answer(output, mode) is None:
        return 0.0
    return 1.0 if is_correct(output, gold, mode) else 0.1
