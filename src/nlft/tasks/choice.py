"""The multiple-choice task: a JSONL file with ``choices``; answers are letters.

A row's ``choices`` is a list of option texts (lettered A, B, C, ...), a dict label -> text, a list of
``{"text", "label"}`` objects (ARC's ``question.choices``) or ``{"text": [...], "label": [...]}`` (the
Hugging Face layout of ARC, OpenBookQA, CommonsenseQA). Its answer is decided by the choices' own labels
when they have them (ARC's ``"1"`` is the option labelled 1, the first), else it is a letter (``"B"``),
a 0-based index stored as a number (``1``, as MMLU stores it) or the text of a choice (``"Paris"``). A
numeric key in a string with unlabelled choices (``"1"``: the first option or the second?) is refused
with an error naming the row and its options, unless it can only be one (``"0"``; ``"4"`` of 4) or the
task says how the file counts: ``choice:index=0`` or ``choice:index=1``. The question shown to the
model lists the options (``A) Paris``); the standard answer reads "The answer is (B) Paris"; the gold
is the letter.

An output names an option by its letter (``#### B``, ``(B)``, ``B) Paris``, ``Answer: b``), by its
number counted from 1 (``option 2``), or by its text. Strict reading takes the ``####`` line only.
An output commits to no single option, and is graded incorrect with a judgment that says why, when
the letter and the text it writes are two different options (``A) Paris`` where Paris is B), when
its answer names several options, when it states every option in turn as its answer, or when it lists
two or more options without a stated answer: the last of a list is its position, not a choice.
"""

from __future__ import annotations

import re
import string
from typing import Any, NamedTuple

from nlft.tasks import answers
from nlft.tasks._rows import FileTask, Where, task_row
from nlft.tasks.base import Mode, no_answer, tidy
from nlft.tasks.prompts import CORRECT_JUDGMENT, task_prompts

LETTERS = string.ascii_uppercase
_LETTER_RE = re.compile(r"^\(?\[?([A-Za-z])\s*(?:[).:\]]|$|\s+[-–—:]?\s*)(.*)$", re.S)
_OPTION_RE = re.compile(r"^(?:option|choice)\s*\(?([A-Za-z]|\d+)\)?(?![\w])", re.I)
_OPTION_LINE_RE = re.compile(r"^[ \t*]*\(?([A-Z])[).:][ \t]+\S[^\n]*", re.M)
_OPTION_MENTION_RE = re.compile(r"\b(?:option|choice)\s*\(?(?:[A-Za-z]|\d+)\)?(?![\w])", re.I)
# An option's letter where a list of options puts it: at the start of a line, "A) ...", "(A) ...", "A." or alone.
_LISTED_RE = re.compile(r"^[ \t*#>-]*\(?([A-Z])(?:[).:]|\)?[ \t]*$)", re.M)
# Another option's marker inside an answer's text: "(C)" or "C)".
_MARKER_RE = re.compile(r"(?:\(([A-Z])\)|(?<![\w(])([A-Z])\))")


class Reading(NamedTuple):
    """What an output chooses: ``letter``, or None with ``problem`` saying why no single option is chosen (None
    when the output simply names none)."""

    letter: str | None
    problem: str | None = None


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _option(letter: str, choices: list[str]) -> str:
    """``(B) Paris`` (or ``(B)`` when the option's text is unknown)."""
    i = LETTERS.index(letter)
    return f"({letter}) {choices[i]}" if i < len(choices) and choices[i] else f"({letter})"


def _several(letters: list[str]) -> str:
    return ", ".join(f"({x})" for x in letters[:-1]) + f" and ({letters[-1]})"


def _read(text: str | None, choices: list[str]) -> Reading:
    """The option one stated answer names (see :func:`read_letter`), or why it names no single one."""
    if not text:
        return Reading(None)
    s = answers.clean(text) or ""
    s = re.sub(r"^(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s*(?:is|:)\s*", "", s, flags=re.I).strip()
    letters = LETTERS[:len(choices)]
    m = _OPTION_RE.match(s)
    if m:
        token = m.group(1)
        if token.isdigit():
            return Reading(letters[int(token) - 1] if 1 <= int(token) <= len(choices) else None)
        return Reading(token.upper() if token.upper() in letters else None)
    m = _LETTER_RE.match(s)
    if m and m.group(1).upper() in letters:
        letter = m.group(1).upper()
        rest = _norm(m.group(2))
        own = _norm(choices[letters.index(letter)])
        others = sorted({a or b for a, b in _MARKER_RE.findall(m.group(2)) if (a or b) in letters} - {letter})
        if others and not (own and rest.startswith(own) and rest == own):
            return Reading(None, f"names several options ({_several([letter, *others])}) as its one answer")
        if rest and rest != own:
            named = [x for x, c in zip(letters, choices) if x != letter and _norm(c) and (
                rest == _norm(c) or (rest.startswith(_norm(c) + " ") and not (own and rest.startswith(own))))]
            if named:
                return Reading(None, f"writes the letter ({letter}) with the text of option "
                                     f"{_option(named[0], choices)}; the letter and the text disagree, so it "
                                     "chooses no single option")
        # "B) Paris": the text after the letter, when there is one, must be that option's (or nothing).
        # A lowercase letter followed by words is a sentence ("a city ...") unless the words are the option's.
        if not rest or rest == own:
            return Reading(letter)
        if m.group(1).isupper() and re.match(r"^\(?[A-Z][).:]", s):
            return Reading(letter)
    wanted = _norm(s)
    for letter, choice in zip(letters, choices):
        if wanted and wanted == _norm(choice):
            return Reading(letter)
    return Reading(None)


def read_letter(text: str | None, choices: list[str]) -> str | None:
    """The option ``text`` names (a letter of ``choices``), or ``None``.

    Reads ``B``, ``(B)``, ``b)``, ``B. Paris``, ``B: Paris``, ``option 2`` / ``choice B`` (numbers
    count from 1), ``[B]`` and the bare text of a choice (``Paris``). A letter outside the choices
    is no answer; so is a letter written with another option's text (``A) London`` where London is
    B) and an answer naming several options (``A) x B) y``).

    >>> read_letter("(B) London", ["Paris", "London"])
    'B'
    """
    return _read(text, choices).letter


def _listed(output: str, choices: list[str]) -> set[str]:
    """The options ``output`` lists: by their letter at the start of a line (``A) ...``, ``(B)``, ``C.``, a lone
    ``D``), or as a line that is an option's text (``- Portuguese``)."""
    texts = {_norm(c): x for x, c in zip(LETTERS, choices) if _norm(c)}
    by_text = {texts[t] for line in output.splitlines() if (t := _norm(line)) in texts}
    return set(_LISTED_RE.findall(output)) | by_text


def read_choice(output: str | None, mode: Mode, choices: list[str]) -> Reading:
    """The option ``output`` chooses among ``choices`` as ``mode`` reads it, or why it chooses none.

    Stated answers first (``####``; flexible: ``\\boxed{}``, "the answer is", ``Answer:``), most trusted
    first; the first that names an option, or names no single one, decides. An output whose stated
    answers go through every option commits to none of them. Without a stated answer, flexible reading
    takes an output that lists two or more options (at the start of lines, by letter or text) to choose
    none; else its last line, its last ``B) ...`` line and its last "option 2" are read, in that order.
    """
    letters = LETTERS[:len(choices)]
    stated = {_read(x, choices).letter for x in answers.statements(output, mode)}
    if len(letters) >= 3 and stated >= set(letters):
        return Reading(None, f"states every option ({letters[0]} to {letters[-1]}) as its answer in turn, so it "
                             "commits to none of them")
    for found in answers.candidates(output, mode, with_last_line=False):
        reading = _read(found, choices)
        if reading.letter or reading.problem:
            return reading
    if mode == "strict" or not output:
        return Reading(None)
    listed = _listed(output, choices) & set(letters)
    if len(letters) >= 2 and listed == set(letters):
        return Reading(None, f"lists every option ({letters[0]} to {letters[-1]}) without choosing one of them")
    if len(listed) >= 2:  # without a stated answer, the last of a list is its position, not a choice
        return Reading(None, f"lists several options ({_several(sorted(listed))}) without choosing one of them")
    lines = [m.group(0) for m in _OPTION_LINE_RE.finditer(output) if m.group(1) in letters]
    for reading in (_read(answers.last_line(output), choices), *(_read(line, choices) for line in lines[-1:])):
        if reading.letter or reading.problem:
            return reading
    mentions = [read_letter(m.group(0), choices) for m in _OPTION_MENTION_RE.finditer(output)]
    return Reading(next((x for x in reversed(mentions) if x), None))


def row_choices(row: dict[str, Any]) -> list[str]:
    """The option texts of a choice row (its ``meta["choices"]``)."""
    return list(row.get("meta", {}).get("choices") or [])


class ChoiceTask(FileTask):
    """Multiple-choice questions; the answer is the letter of an option."""

    name = "choice"
    summary = ("multiple choice (JSONL with 'choices', labelled or not): the letter (B), the option number or its "
               "text; choice:index=0|1 says how a file's numeric keys count")
    solve_template, brief_template, judge_instruction = task_prompts(
        "multiple-choice question", "<letter>", "a careful grader", "a multiple-choice question", "Question")

    def __init__(self, index: int | None = None) -> None:
        if index not in (None, 0, 1):
            raise ValueError(f"choice:index is 0 or 1 (the number of a file's first option), got {index!r}")
        # How a numeric answer key of unlabelled choices counts (None: a JSON number from 0, a string refused
        # when it could be either). The rows it builds are plain choice rows.
        self.index = index

    def extract(self, output: str | None, mode: Mode = "strict", choices: list[str] | None = None) -> str | None:
        """The letter ``output`` chooses (:func:`read_choice`). Without ``choices`` any letter A-Z (and ``option N``)
        is read."""
        return read_choice(output, mode, choices if choices is not None else [""] * len(LETTERS)).letter

    def is_correct(self, output: str | None, row: dict[str, Any], mode: Mode = "strict") -> bool:
        """Whether ``output`` chooses the row's gold letter."""
        return self.extract_for_row(output, row, mode) == str(row["gold"]).upper()

    def extract_for_row(self, output: str | None, row: dict[str, Any], mode: Mode = "strict") -> str | None:
        """The letter ``output`` chooses among the row's options (None for a letter that is none of them)."""
        return self.extract(output, mode, row_choices(row) or None)

    def rule_judgment(self, output: str, row: dict[str, Any], mode: Mode = "strict") -> str:
        """Names the option chosen (as ``mode`` reads it) and the right one, or says why the output chooses none."""
        choices = row_choices(row)
        options = choices or [""] * len(LETTERS)
        gold = str(row["gold"]).upper()
        right = _option(gold, choices)
        reading = read_choice(output, mode, options)
        if reading.problem:
            return tidy(f"The response {reading.problem}; the right option is {right}.")
        if reading.letter is None:
            loose = read_choice(output, "flexible", options) if mode == "strict" else Reading(None)
            seen = (f" (it seems to choose {_option(loose.letter, choices)})" if loose.letter else
                    f" (it {loose.problem})" if loose.problem else "")
            return tidy(f"{no_answer(mode, '<letter>', row, seen)}; the right option is {right}.")
        if reading.letter == gold:
            return CORRECT_JUDGMENT
        return tidy(f"The response chooses {_option(reading.letter, choices)}, but the right option is {right}.")

    def build_row(self, row_id: str, question: str, answer: Any, raw: dict[str, Any], where: Where) -> dict[str, Any]:
        """A choice row: the question with its lettered options, the gold letter, "The answer is (B) Paris"."""
        choices, labels = _choices_of(raw.get("choices"), where)
        gold = _gold_letter(answer, choices, labels, self.index, where)
        letters = LETTERS[:len(choices)]
        shown = question + "\n\n" + "\n".join(f"{x}) {c}" for x, c in zip(letters, choices))
        reference = f"The answer is ({gold}) {choices[letters.index(gold)]}\n#### {gold}"
        return task_row(row_id, shown, reference, gold, self.name, {"choices": choices})


def _gold_letter(answer: Any, choices: list[str], labels: list[str] | None, index: int | None,
                 where: Where) -> str:
    """The letter of a row's answer key: by the choices' ``labels`` when they have them; else a letter, a number
    counted as ``index`` says (None: a JSON number from 0, a string only where it can count one way), or a
    choice's text. DataError naming the row and its options otherwise."""
    letters = LETTERS[:len(choices)]
    listing = "; ".join(f"{lab}) {c[:40]}" for lab, c in zip(labels or letters, choices))
    key = str(answer).strip() if isinstance(answer, (str, int)) and not isinstance(answer, bool) else ""
    if not key:
        raise where.error(f"the answer {answer!r} is not among the {len(choices)} choices ({listing})")
    if labels is not None:
        by_label = {lab.upper(): x for lab, x in zip(labels, letters)}
        if key.upper() in by_label:
            return by_label[key.upper()]
        if isinstance(answer, int) and not any(lab.isdigit() for lab in labels) and 0 <= answer < len(choices):
            return letters[answer]
    elif key.isdigit():
        n = int(key)
        base = index if index is not None else 0 if isinstance(answer, int) or n == 0 else 1 if n == len(choices) \
            else None
        if base is None and n < len(choices):
            raise where.error(
                f"the answer {key!r} could count the {len(choices)} choices from 0 (option {letters[n]}) or from 1 "
                f"(option {letters[n - 1]}): {listing}. Say how the file counts with --answer-type choice:index=0 "
                "or choice:index=1, or give the choices their labels")
        if base is not None and 0 <= n - base < len(choices):
            return letters[n - base]
    elif len(key) == 1 and key.upper() in letters:
        return key.upper()
    found = [x for x, c in zip(letters, choices) if _norm(c) and _norm(c) == _norm(key)]
    if found:
        return found[0]
    labelled = "labels" if labels is not None else "letters"
    raise where.error(f"the answer {key!r} is not among the {len(choices)} choices (their {labelled}, "
                      f"{'an index, ' if labels is None else ''}or a choice's text): {listing}")


def _choices_of(raw: Any, where: Where) -> tuple[list[str], list[str] | None]:
    """A row's ``choices`` as option texts and their own labels (None when unlabelled): a list of texts, a list of
    ``{"text", "label"}``, ``{"text": [...], "label": [...]}`` or a dict label -> text (letters or numbers, in
    order)."""
    labels: list[str] | None = None
    if isinstance(raw, dict) and isinstance(raw.get("text"), list):
        labels = raw.get("label") if isinstance(raw.get("label"), list) else None
        raw = raw["text"]
    elif isinstance(raw, dict):
        keys = [str(k).strip() for k in raw]
        if all(k.isdigit() for k in keys):
            order = sorted(keys, key=int)
        elif all(len(k) == 1 and k.upper() in LETTERS for k in keys):
            order = sorted(keys, key=str.upper)
            if [k.upper() for k in order] != list(LETTERS[:len(order)]):
                raise where.error(f"choice letters must be A, B, C, ... in order, got {sorted(keys)}", "choices")
        else:
            raise where.error(f"choice labels must be letters or numbers, got {keys}", "choices")
        by_key = {str(k).strip(): v for k, v in raw.items()}
        labels, raw = order, [by_key[k] for k in order]
    elif isinstance(raw, list) and raw and all(isinstance(x, dict) for x in raw):
        if not all("text" in x for x in raw):
            raise where.error("every choice object needs a 'text' (and may have a 'label')", "choices")
        labels = [x["label"] for x in raw] if all("label" in x for x in raw) else None
        raw = [x["text"] for x in raw]
    if not isinstance(raw, list) or len(raw) < 2 or len(raw) > len(LETTERS):
        raise where.error("needs 'choices': a list of 2 to 26 option texts (or labelled options)", "choices")
    out = []
    for item in raw:
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str) or not item.strip():
            raise where.error("every choice must be a non-empty text", "choices")
        out.append(item.strip())
    if labels is not None:
        labels = [str(x).strip() for x in labels]
        if len(labels) != len(out) or len({x.upper() for x in labels}) != len(labels) or not all(labels):
            raise where.error(f"the choices' labels must be distinct, one per choice, got {labels}", "choices")
    return out, labels
