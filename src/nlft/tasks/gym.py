"""Any reasoning-gym task as an nlft task: ``rg:NAME[:key=value,...]`` (``rg:word_sorting``, ``rg:spell_backward``).

Questions come from reasoning-gym's seeded generator (offline); an output's answer (``####`` line,
flexible: also ``<answer>...</answer>``, ``\\boxed{}``, "the answer is", the last line) is scored by
the task's own ``score_answer`` and counts as correct at a score of 1.0. A row keeps the generator's
entry (question, answer, metadata) in ``meta["entry"]``, which ``score_answer`` reads. The rule
judge states the answer given, its score and the right answer with the entry's details.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from typing import Any

from nlft.tasks import answers
from nlft.tasks._rows import task_row
from nlft.tasks.base import Mode, Task, no_answer, quoted, tidy
from nlft.tasks.prompts import CORRECT_JUDGMENT, task_prompts
from nlft.utils.files import DataError

PREFIX = "rg:"
# Metadata that says nothing about the question.
_QUIET_METADATA = {"source_dataset", "source_index", "difficulty"}


def _reasoning_gym() -> Any:
    try:
        import reasoning_gym
    except ImportError as err:
        raise ImportError("reasoning-gym tasks need reasoning-gym: pip install 'nlft[data]'") from err
    return reasoning_gym


def gym_names() -> list[str]:
    """The names of reasoning-gym's tasks (empty when reasoning-gym is not installed)."""
    try:
        return sorted(_reasoning_gym().factory.DATASETS)
    except ImportError:
        return []


def parse_options(name: str) -> tuple[str, dict[str, Any]]:
    """``"chain_sum:max_terms=3,max_digits=2"`` -> ``("chain_sum", {"max_terms": 3, "max_digits": 2})``."""
    task, _, rest = name.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"bad generator option {item!r} in {name!r}; write key=value pairs after a colon")
        value = value.strip()
        try:
            options[key.strip()] = json.loads(value.lower() if value in ("True", "False") else value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return task, options


def check_name(name: str) -> None:
    """DataError listing reasoning-gym's tasks when ``name`` is not one of them."""
    names = sorted(_reasoning_gym().factory.DATASETS)
    if name not in names:
        raise DataError(f"unknown reasoning-gym task {name!r}; available: {', '.join(names)}", path=PREFIX + name,
                        field="task")


def generate_entries(name: str, options: dict[str, Any], *, size: int, seed: int) -> list[dict[str, Any]]:
    """``size`` entries of reasoning-gym's generator ``name`` with ``options``, seeded by ``seed``."""
    check_name(name)
    try:
        return list(_reasoning_gym().create_dataset(name, size=size, seed=seed, **options))
    except (TypeError, AssertionError) as err:
        raise ValueError(f"reasoning-gym task {name!r} does not take these options {options}: {err}") from None


def split_seed(name: str, split: str, seed: int) -> int:
    """The generator seed of a split: train and test draw from different seeds, so they share no questions by
    construction (the arithmetic sources' rule)."""
    return random.Random(f"{name}:{split}:{seed}").randrange(2**31)


@lru_cache(maxsize=64)
def _scorer(name: str, options_json: str) -> Any:
    check_name(name)
    dataset = _reasoning_gym().create_dataset(name, size=1, seed=0, **json.loads(options_json))
    return dataset.score_answer


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it (sets and tuples become lists, other objects their text)."""
    return json.loads(json.dumps(value, default=lambda v: sorted(v) if isinstance(v, (set, frozenset)) else str(v)))


class GymTask(Task):
    """One reasoning-gym task, scored by its ``score_answer``."""

    solve_template, brief_template, judge_instruction = task_prompts(
        "task", "<answer>", "a careful grader", "a task", "Task")

    def __init__(self, spec: str) -> None:
        body = spec.removeprefix(PREFIX)
        self.task_name, self.options = parse_options(body)
        check_name(self.task_name)
        self.name = PREFIX + body
        self.summary = f"reasoning-gym {self.task_name}: its score_answer"

    def score(self, answer: str | None, row: dict[str, Any]) -> float:
        """reasoning-gym's score of ``answer`` for the row's entry (0.0 for no answer)."""
        if answer is None:
            return 0.0
        entry = row.get("meta", {}).get("entry")
        if not isinstance(entry, dict):
            raise DataError(f"a {self.name} row needs meta.entry (the generator's entry)", field="meta")
        try:
            return float(_scorer(self.task_name, json.dumps(self.options, sort_keys=True))(answer, entry))
        except Exception:  # a task's scorer may fail on an odd answer: that answer is wrong
            return 0.0

    def extract(self, output: str | None, mode: Mode = "strict") -> str | None:
        """The answer text (``####`` line; flexible: also ``<answer>``, ``\\boxed{}``, phrasings, the last line)."""
        return answers.first_answer(output, mode)

    def is_correct(self, output: str | None, row: dict[str, Any], mode: Mode = "strict") -> bool:
        """Whether ``score_answer`` gives the answer read from ``output`` the full score, 1.0."""
        return self.score(self.extract(output, mode), row) >= 1.0

    def rule_judgment(self, output: str, row: dict[str, Any], mode: Mode = "strict") -> str:
        """The answer given (as ``mode`` reads it) and its score, the right answer, and the entry's details."""
        metadata = (row.get("meta", {}).get("entry") or {}).get("metadata") or {}
        details = [f"{k}={v}" for k, v in metadata.items()
                   if k not in _QUIET_METADATA and isinstance(v, (str, int, float)) and len(str(v)) <= 80]
        about = f" (task details: {', '.join(details[:6])})" if details else ""
        found = self.extract(output, mode)
        gold = row["gold"]
        if found is None:
            loose = self.extract(output, "flexible") if mode == "strict" else None
            seen = f" (its last answer-like text is {quoted(loose)})" if loose else ""
            return tidy(f"{no_answer(mode, '<answer>', row, seen)}; the correct answer is {quoted(gold)}{about}.")
        score = self.score(found, row)
        if score >= 1.0:
            return CORRECT_JUDGMENT
        return tidy(f"The response answers {quoted(found)}, which scores {score:.2g} of 1; the correct answer is "
                    f"{quoted(gold)}{about}.")

    def rows(self, split: str, size: int, seed: int) -> list[dict[str, Any]]:
        """``size`` rows of the split ``split`` (seeded by ``seed``), in the layout of :mod:`nlft.tasks.base`."""
        entries = generate_entries(self.task_name, self.options, size=size,
                                   seed=split_seed(self.task_name, split, seed))
        rows = []
        for index, entry in enumerate(entries):
            gold = str(entry["answer"]).strip()
            if not gold:
                raise DataError("empty answer", path=self.name, line=index + 1, field="answer")
            cot = (entry.get("metadata") or {}).get("answer_cot")
            reference = f"#### {gold}"
            if isinstance(cot, str) and cot.strip():
                reference = cot.strip() if "####" in cot else f"{cot.strip()}\n#### {gold}"
            meta = {"entry": _plain({"question": entry["question"], "answer": entry["answer"],
                                     "metadata": entry.get("metadata") or {}})}
            rows.append(task_row(f"{self.task_name}-{split}-{seed}-{index}", entry["question"].strip(), reference,
                                 gold, self.name, meta))
        return rows
