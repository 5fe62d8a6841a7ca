"""Question sources: GSM8K (local folder or the hub), reasoning-gym generators, HumanEval, any JSONL/CSV file.

Number sources yield the rows they always have: ``id``, ``question``, ``reference`` (the full
standard solution, ending in ``#### N``) and ``gold`` (the normalised final number), without
``task``. The other tasks' rows add ``task`` and ``meta`` (the layout of :mod:`nlft.tasks.base`).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from nlft.tasks.grading import gold_answer, normalize_number
from nlft.tasks.gym import PREFIX as GYM_PREFIX
from nlft.tasks.gym import generate_entries, split_seed
from nlft.tasks.gym import parse_options as parse_task
from nlft.tasks.registry import ANSWER_TYPES, HUMANEVAL, get_task
from nlft.utils.files import DataError, iter_jsonl

__all__ = ["file_row", "load_questions", "make_row", "parse_task"]

# Offline, seeded generators of reasoning-gym: arithmetic word problems and plain arithmetic.
REASONING_GYM_TASKS = ("gsm_symbolic", "chain_sum", "basic_arithmetic")
GSM8K_HUB_NAME = "openai/gsm8k"
GSM8K_ENV = "NLFT_GSM8K_DIR"


def load_questions(name_or_path: str, *, data_dir: str | os.PathLike | None = None, split: str = "train",
                   limit: int | None = None, seed: int = 0, question_field: str = "question",
                   answer_field: str = "answer", answer_type: str = "number") -> list[dict[str, Any]]:
    """Load questions with their standard answers.

    ``name_or_path``:

    - ``gsm8k``: ``{data_dir}/{split}.jsonl`` (``data_dir`` defaults to ``$NLFT_GSM8K_DIR``), or the
      hub dataset ``openai/gsm8k`` when no folder is given;
    - ``gsm_symbolic``, ``chain_sum``, ``basic_arithmetic``: reasoning-gym generators, offline and
      seeded by ``seed`` (``split="test"`` draws from a different seed than ``train``), with the
      generator's options after a colon: ``chain_sum:max_terms=3,max_digits=2``;
    - a ``.jsonl``/``.json`` or ``.csv`` file with ``question_field`` and ``answer_field`` columns;
    - ``hf:NAME`` (or ``hf:NAME:CONFIG``): a Hugging Face dataset with those columns;
    - ``rg:NAME[:key=value,...]``: any reasoning-gym task, scored by its ``score_answer``
      (:mod:`nlft.tasks.gym`), seeded like the arithmetic ones;
    - ``humaneval``: HumanEval's problems (:mod:`nlft.tasks.code`), ``split`` ``test``.

    ``answer_type`` (files and ``hf:``): ``number`` (default): the answer column holds a full
    solution ending in ``#### N`` or just the final number; ``math``, ``choice`` (rows with
    ``choices``), ``text`` (or ``text:case=true,...``): see those tasks. A JSONL row that names its
    ``task`` (rows nlft wrote) is read as that task's row whatever ``answer_type`` says.
    ``limit`` keeps the first ``limit`` rows (file order, so a run is repeatable).

    Returns rows ``{"id", "question", "reference", "gold"}`` (number) or with ``task`` and ``meta``
    too; a malformed row raises :class:`~nlft.utils.files.DataError` naming the file, line and field.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if answer_type.partition(":")[0] not in ANSWER_TYPES:
        raise ValueError(f"unknown answer type {answer_type!r}; choose one of {', '.join(ANSWER_TYPES)}")
    get_task(answer_type)  # its options are checked before any file is read
    if name_or_path.startswith(GYM_PREFIX):
        rows = get_task(name_or_path).rows(split, limit if limit is not None else 100, seed)  # type: ignore[attr-defined]
    elif name_or_path == HUMANEVAL:
        try:
            from nlft.tasks.code import load_humaneval
        except ImportError as err:
            raise ValueError(f"the humaneval dataset is not available in this build (nlft.tasks.code: {err})") from None
        rows = load_humaneval(limit=limit, split=split)
    elif name_or_path == "gsm8k":
        folder = data_dir or os.environ.get(GSM8K_ENV)
        if folder:
            path = Path(folder) / f"{split}.jsonl"
            if not path.exists():
                raise FileNotFoundError(f"GSM8K split file not found: {path} (check --data-dir)")
            rows = _from_jsonl(path, "question", "answer", limit, id_prefix=f"gsm8k-{split}", answer_type="number")
        else:
            rows = _from_hub(GSM8K_HUB_NAME, "main", split, "question", "answer", limit,
                             id_prefix=f"gsm8k-{split}")
    elif name_or_path.split(":", 1)[0] in REASONING_GYM_TASKS:
        task, options = parse_task(name_or_path)
        rows = _from_reasoning_gym(task, split, limit if limit is not None else 100, seed, options)
    elif name_or_path.startswith("hf:"):
        _, name, *config = name_or_path.split(":")
        rows = _from_hub(name, config[0] if config else None, split, question_field, answer_field, limit,
                         id_prefix=name.replace("/", "_") + f"-{split}", answer_type=answer_type)
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise FileNotFoundError(
                f"dataset {name_or_path!r} is neither a known name (gsm8k, "
                f"{', '.join(REASONING_GYM_TASKS)}, rg:NAME, humaneval, hf:NAME) nor an existing file"
            )
        if path.suffix.lower() == ".csv":
            rows = _from_csv(path, question_field, answer_field, limit, answer_type)
        else:
            rows = _from_jsonl(path, question_field, answer_field, limit, id_prefix=path.stem,
                               answer_type=answer_type)
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"duplicate id {dup!r}", path=name_or_path, field="id")
    return rows


def make_row(question: Any, answer: Any, *, row_id: str, path: str | os.PathLike | None = None,
             line: int | None = None, question_field: str = "question",
             answer_field: str = "answer", answer_type: str = "number",
             raw: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate one question/answer pair into a dataset row, with a precise error when malformed.

    ``answer_type`` other than ``number``: the task's ``make_row`` builds the row (``raw``: the whole
    source row, where a choice row keeps its ``choices``).
    """
    if answer_type != "number":
        return get_task(answer_type).make_row(  # type: ignore[attr-defined]
            question, answer, row_id=row_id, path=path, line=line, question_field=question_field,
            answer_field=answer_field, raw=raw)
    if not isinstance(question, str) or not question.strip():
        raise DataError("missing or empty question", path=path, line=line, field=question_field)
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if not isinstance(answer, str) or not answer.strip():
        raise DataError("missing or empty answer", path=path, line=line, field=answer_field)
    if "####" in answer:
        try:
            gold = gold_answer(answer)
        except ValueError:
            raise DataError("the answer's '#### ' is not followed by a number", path=path, line=line,
                            field=answer_field) from None
        reference = answer.strip()
    else:
        gold = normalize_number(answer)
        if gold is None:
            raise DataError(f"the answer {answer.strip()[:40]!r} is neither a number nor a solution "
                            "ending in '#### <number>'", path=path, line=line, field=answer_field)
        reference = f"#### {gold}"
    return {"id": row_id, "question": question.strip(), "reference": reference, "gold": gold}


def file_row(row: dict[str, Any]) -> dict[str, Any]:
    """A question row as a JSONL file keeps it, for :func:`load_questions` to read back: ``id``, ``question``,
    ``answer`` (the reference) for numbers, as they were always written; the whole row (``task``, ``meta``) for
    another task's."""
    if row.get("task"):
        return dict(row)
    return {"id": row["id"], "question": row["question"], "answer": row["reference"]}


def _from_jsonl(path: Path, qf: str, af: str, limit: int | None, id_prefix: str,
                answer_type: str = "number") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for number, raw in iter_jsonl(path):
        if limit is not None and len(rows) >= limit:
            break
        row_id = raw.get("id")
        row_id = str(row_id) if row_id is not None else f"{id_prefix}-{len(rows)}"
        if raw.get("task"):
            rows.append(_task_row(raw, row_id, path, number))
            continue
        rows.append(make_row(raw.get(qf), raw.get(af), row_id=row_id, path=path, line=number,
                             question_field=qf, answer_field=af, answer_type=answer_type, raw=raw))
    return rows


def _task_row(raw: dict[str, Any], row_id: str, path: Path, line: int) -> dict[str, Any]:
    """A row that names its task (one nlft wrote): checked and kept in the layout of :mod:`nlft.tasks.base`."""
    try:
        task = get_task(str(raw["task"]))
    except ValueError as err:
        raise DataError(str(err), path=path, line=line, field="task") from None
    for name in ("question", "reference"):
        if not isinstance(raw.get(name), str) or not raw[name].strip():
            raise DataError("missing or empty", path=path, line=line, field=name)
    meta = raw.get("meta", {})
    if not isinstance(meta, dict):
        raise DataError("must be an object", path=path, line=line, field="meta")
    return {"id": row_id, "question": raw["question"], "reference": raw["reference"],
            "gold": task.gold_of(raw, source=path, line=line), "task": task.name, "meta": meta}


def _from_csv(path: Path, qf: str, af: str, limit: int | None, answer_type: str = "number") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for name in (qf, af):
            if reader.fieldnames is None or name not in reader.fieldnames:
                raise DataError(f"no column {name!r} (columns: {reader.fieldnames})", path=path, line=1,
                                field=name)
        for raw in reader:
            if limit is not None and len(rows) >= limit:
                break
            row_id = raw.get("id") or f"{path.stem}-{len(rows)}"
            rows.append(make_row(raw.get(qf), raw.get(af), row_id=row_id, path=path, line=reader.line_num,
                                 question_field=qf, answer_field=af, answer_type=answer_type, raw=raw))
    return rows


def _from_hub(name: str, config: str | None, split: str, qf: str, af: str, limit: int | None,
              id_prefix: str, answer_type: str = "number") -> list[dict[str, Any]]:
    from datasets import load_dataset

    ds = load_dataset(name, config, split=split)
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    rows = []
    for index, raw in enumerate(ds):
        rows.append(make_row(raw.get(qf), raw.get(af), row_id=f"{id_prefix}-{index}", path=f"hf:{name}/{split}",
                             line=index + 1, question_field=qf, answer_field=af, answer_type=answer_type,
                             raw=dict(raw)))
    return rows


def _from_reasoning_gym(task: str, split: str, size: int, seed: int,
                        options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    # Train and test draw from different seeds so that they do not share questions by construction.
    entries = generate_entries(task, options or {}, size=size, seed=split_seed(task, split, seed))
    rows = []
    for index, entry in enumerate(entries):
        gold = normalize_number(str(entry["answer"]))
        if gold is None:
            raise DataError(f"non-numeric answer {entry['answer']!r}", path=f"reasoning_gym:{task}",
                            line=index + 1, field="answer")
        cot = (entry.get("metadata") or {}).get("answer_cot")
        if cot and "####" in cot:
            reference = cot.strip()
        else:
            expression = (entry.get("metadata") or {}).get("expression")
            reference = (f"{expression} = {gold}\n#### {gold}" if expression else f"#### {gold}")
        rows.append({"id": f"{task}-{split}-{seed}-{index}", "question": entry["question"].strip(),
                     "reference": reference, "gold": gold})
    return rows
