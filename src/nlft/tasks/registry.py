"""The tasks by name: :func:`get_task` (a spec -> its :class:`~nlft.tasks.base.Task`), :func:`task_of` (a row's task).

Specs: ``number`` (rows without ``task``), ``math``, ``choice[:index=0|1]``,
``text[:match=contains,case=true,punct=true,articles=true,numbers=true]``, ``rg:NAME[:key=value,...]`` (any
reasoning-gym task) and ``humaneval`` (code with tests, from :mod:`nlft.tasks.code`, loaded only when asked for;
``code``, the answer type of a file of such problems, gives the same task).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from nlft.tasks.base import Task

NUMBER = "number"
# The answer types of a question file (``--answer-type``).
ANSWER_TYPES = ("number", "math", "choice", "text", "code")
HUMANEVAL = "humaneval"


def _humaneval() -> Task:
    try:
        from nlft.tasks.code import HumanEvalTask
    except ImportError as err:
        raise ValueError(f"the humaneval task is not available in this build (nlft.tasks.code: {err})") from None
    return HumanEvalTask()


def get_task(spec: str | None = None) -> Task:
    """The task of ``spec`` (None or ``""``: number), one object per spec. ValueError (DataError for reasoning-gym
    names) when unknown."""
    return _task((spec or NUMBER).strip())


@lru_cache(maxsize=128)
def _task(spec: str) -> Task:
    head, _, rest = spec.partition(":")
    if head == NUMBER and not rest:
        from nlft.tasks.number import NumberTask

        return NumberTask()
    if head == "math" and not rest:
        from nlft.tasks.mathexpr import MathTask

        return MathTask()
    if head == "choice":
        from nlft.tasks.choice import ChoiceTask
        from nlft.tasks.gym import parse_options

        _, options = parse_options(spec)
        index = options.get("index", 0)
        if set(options) - {"index"} or isinstance(index, bool) or index not in (0, 1):
            raise ValueError(f"the choice option is index=0 or index=1 (how numeric answer keys count), got {rest!r}")
        return ChoiceTask(**options)
    if head == "text":
        from nlft.tasks.gym import parse_options
        from nlft.tasks.text import OPTIONS, TextTask

        _, options = parse_options(spec)
        unknown = sorted(set(options) - {*OPTIONS, "match"})
        if unknown or not all(isinstance(v, bool) for k, v in options.items() if k != "match"):
            raise ValueError(f"text options are {', '.join(f'{o}=true|false' for o in OPTIONS)} and "
                             f"match=exact|contains, got {rest!r}")
        return TextTask(**options)
    if head == "rg":
        from nlft.tasks.gym import GymTask

        if not rest:
            raise ValueError("write a reasoning-gym task as rg:NAME (see nlft tasks)")
        return GymTask(spec)
    if head in (HUMANEVAL, "code") and not rest:  # code: a file of problems with their own tests, HumanEval's task
        return _humaneval()
    raise ValueError(f"unknown task {spec!r}; choose number, math, choice[:index=0|1], text[:options], rg:NAME or "
                     "humaneval")


def task_of(row: dict[str, Any]) -> Task:
    """The task of a row: its ``task``, else number (the rows written before tasks existed)."""
    return get_task(row.get("task") or NUMBER)


def is_number(task: Task) -> bool:
    """Whether ``task`` is the number task (rows without ``task``, the paper's prompts and calculator judge)."""
    return task.name == NUMBER


def common_task(rows: Iterable[dict[str, Any]]) -> Task:
    """The one task of ``rows`` (number when empty); ValueError when they mix tasks."""
    specs = {row.get("task") or NUMBER for row in rows}
    if len(specs) > 1:
        raise ValueError(f"these rows mix tasks ({', '.join(sorted(specs))}); use one task per file")
    return get_task(specs.pop() if specs else NUMBER)


def task_lines() -> list[tuple[str, str]]:
    """``(spec, one line)`` of every built-in task, for ``nlft tasks``."""
    from nlft.tasks.choice import ChoiceTask
    from nlft.tasks.mathexpr import MathTask
    from nlft.tasks.number import NumberTask
    from nlft.tasks.text import TextTask

    lines = [(t.name, t.summary) for t in (NumberTask(), MathTask(), ChoiceTask(), TextTask())]
    lines.append(("rg:NAME[:key=value,...]", "any reasoning-gym task (names below): the task's own score_answer"))
    lines.append((HUMANEVAL, "Python functions checked by their unit tests (HumanEval; nlft.tasks.code)"))
    lines.append(("code", "a file of Python problems with their own tests (MBPP's test_list, HumanEval's layout): "
                          "--answer-type code"))
    return lines


def resolve_prompt(prompt: str | None, task: Task) -> str:
    """The solve prompt of ``task`` that ``--prompt`` names: ``solve``, ``base``, ``brief`` or a template file.

    For numbers the names are the paper's three prompts (:data:`nlft.tasks.prompts.TEMPLATES`); another
    task has one solve prompt of its own, which every name gives. None: the task's default prompt.
    """
    from pathlib import Path

    from nlft.tasks.base import PROMPT_NAMES
    from nlft.tasks.prompts import read_template

    if prompt is None or prompt in PROMPT_NAMES:
        return task.template(prompt)
    if not Path(prompt).is_file():
        raise ValueError(f"--prompt must be one of {', '.join(PROMPT_NAMES)} or a template file, got {prompt!r}")
    return read_template(prompt, field="prompt")


def dataset_task(name: str, answer_type: str = "number") -> Task:
    """The task of a dataset name before its rows are read: ``rg:NAME`` and ``humaneval`` are theirs, anything
    else (gsm8k, the arithmetic generators, a file) has ``answer_type``."""
    if name.startswith("rg:") or name == HUMANEVAL:
        return get_task(name)
    return get_task(answer_type)
