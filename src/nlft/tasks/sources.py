"""Question sources: GSM8K (local folder or the hub), reasoning-gym generators, HumanEval, any JSONL/CSV file.

Number sources yield the rows they always have: ``id``, ``question``, ``reference`` (the full
standard solution, ending in ``#### N``) and ``gold`` (the normalised final number), without
``task``. The other tasks' rows add ``task`` and ``meta`` (the layout of :mod:`nlft.tasks.base`).
"""

from __future__ import annotations

import csv
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nlft.tasks.grading import gold_answer, normalize_number
from nlft.tasks.gym import PREFIX as GYM_PREFIX
from nlft.tasks.gym import generate_entries
from nlft.tasks.gym import parse_options as parse_task
from nlft.tasks.gym import split_seed as gym_split_seed
from nlft.tasks.layout import FieldMap, Record, iter_records, map_record
from nlft.tasks.registry import ANSWER_TYPES, HUMANEVAL, get_task
from nlft.utils.files import DataError

__all__ = ["SPLITS", "file_row", "load_questions", "make_row", "parse_task", "split_rows"]

# Offline, seeded generators of reasoning-gym: arithmetic word problems and plain arithmetic.
REASONING_GYM_TASKS = ("gsm_symbolic", "chain_sum", "basic_arithmetic")
GSM8K_HUB_NAME = "openai/gsm8k"
GSM8K_ENV = "NLFT_GSM8K_DIR"
# The parts of a file split by ``fractions``, in order (``heldout`` is another name of ``test``).
SPLITS = ("train", "validation", "test")


def load_questions(name_or_path: str, *, data_dir: str | os.PathLike | None = None, split: str | None = "train",
                   limit: int | None = None, seed: int = 0, question_field: str = "question",
                   answer_field: str = "answer", answer_type: str = "number", fields: FieldMap | None = None,
                   offset: int = 0, fractions: tuple[float, ...] | None = None,
                   split_seed: int = 0) -> list[dict[str, Any]]:
    """Load questions with their standard answers.

    ``name_or_path``:

    - ``gsm8k``: ``{data_dir}/{split}.jsonl`` (``data_dir`` defaults to ``$NLFT_GSM8K_DIR``), or the
      hub dataset ``openai/gsm8k`` when no folder is given;
    - ``gsm_symbolic``, ``chain_sum``, ``basic_arithmetic``: reasoning-gym generators, offline and
      seeded by ``seed`` (``split="test"`` draws from a different seed than ``train``), with the
      generator's options after a colon: ``chain_sum:max_terms=3,max_digits=2``;
    - a ``.jsonl`` file, a ``.json`` array or a ``.csv`` file: ``fields`` (:class:`~nlft.tasks.layout.FieldMap`,
      default: ``question_field`` and ``answer_field``) says where each row's question, answer and choices are;
      ``messages`` rows are read as chats; ``offset`` skips the first rows; ``fractions`` (train, validation,
      test, summing to 1) splits the rows by a shuffle seeded by ``split_seed`` and ``split`` picks the part;
    - ``hf:NAME`` (or ``hf:NAME:CONFIG``): a Hugging Face dataset with those columns;
    - ``rg:NAME[:key=value,...]``: any reasoning-gym task, scored by its ``score_answer``
      (:mod:`nlft.tasks.gym`), seeded like the arithmetic ones;
    - ``humaneval``: HumanEval's problems (:mod:`nlft.tasks.code`), ``split`` ``test`` (``split=None``: the
      default split of each source: ``test`` for HumanEval, said in one line on stderr; ``train`` elsewhere).

    ``answer_type`` (files and ``hf:``): ``number`` (default): the answer column holds a full
    solution ending in ``#### N`` or just the final number; ``math``, ``choice`` (rows with
    ``choices``), ``text`` (or ``text:case=true,...``): see those tasks; ``code``: Python problems with
    their own tests (MBPP's ``test_list``, or HumanEval's ``test`` and ``entry_point``: :mod:`nlft.tasks.code`).
    A JSONL row that names its
    ``task`` (rows nlft wrote) is read as that task's row whatever ``answer_type`` says.
    ``limit`` keeps the first ``limit`` rows (file order, so a run is repeatable).

    Returns rows ``{"id", "question", "reference", "gold"}`` (number) or with ``task`` and ``meta``
    too; a malformed row raises :class:`~nlft.utils.files.DataError` naming the file, line and field.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if answer_type.partition(":")[0] not in ANSWER_TYPES:
        raise ValueError(f"unknown answer type {answer_type!r}; choose one of {', '.join(ANSWER_TYPES)}")
    get_task(answer_type)  # its options are checked before any file is read
    if split is None and name_or_path != HUMANEVAL:
        split = "train"
    if name_or_path.startswith(GYM_PREFIX):
        rows = get_task(name_or_path).rows(split, limit if limit is not None else 100, seed)  # type: ignore[attr-defined]
    elif name_or_path == HUMANEVAL:
        try:
            from nlft.tasks.code import load_humaneval
        except ImportError as err:
            raise ValueError(f"the humaneval dataset is not available in this build (nlft.tasks.code: {err})") from None
        if split is None:
            print("nlft: humaneval has one split, 'test': reading it", file=sys.stderr)
            split = "test"
        rows = load_humaneval(limit=limit, split=split)
    elif name_or_path == "gsm8k":
        folder = data_dir or os.environ.get(GSM8K_ENV)
        if folder:
            path = Path(folder) / f"{split}.jsonl"
            if not path.exists():
                raise FileNotFoundError(f"GSM8K split file not found: {path} (check --data-dir)")
            rows = _from_file(path, FieldMap(), limit, "number", id_prefix=f"gsm8k-{split}")
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
        fmap = fields or FieldMap(question=question_field, answer=answer_field)
        stop = None if fractions or limit is None else offset + limit
        rows = _from_file(path, fmap, stop, answer_type, id_prefix=path.stem)
        if fractions:
            rows = split_rows(rows, fractions, split_seed)[_split_name(split)]
        rows = rows[offset:None if limit is None else offset + limit]
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


def _from_file(path: Path, fmap: FieldMap, stop: int | None, answer_type: str, id_prefix: str) -> list[dict[str, Any]]:
    """The rows of a JSONL, JSON-array or CSV file through ``fmap``, the first ``stop`` of them; the rows that a
    label set drops are counted in one line on stderr."""
    records = _csv_records(path, fmap) if path.suffix.lower() == ".csv" else iter_records(path)
    rows: list[dict[str, Any]] = []
    dropped: list[str] = []
    for rec in records:
        if stop is not None and len(rows) >= stop:
            break
        raw = rec.raw
        row_id = raw.get(fmap.id) if fmap.id else raw.get("id", raw.get("task_id"))
        if fmap.id and row_id is None:
            raise rec.error("missing id", path, fmap.id)
        row_id = str(row_id) if row_id is not None else f"{id_prefix}-{len(rows) + len(dropped)}"
        try:
            if raw.get("task"):
                rows.append(_task_row(raw, row_id, path, rec.line))
                continue
            if answer_type == "code":
                from nlft.tasks.code import code_row

                rows.append(code_row(raw, row_id=row_id, path=path, line=rec.line))
                continue
            mapped = map_record(fmap, rec, path=path, answer_type=answer_type)
            if mapped is None:
                dropped.append(f"line {rec.line}" if rec.line is not None else f"row {rec.row}")
                continue
            question, answer, raw = mapped
            rows.append(make_row(question, answer, row_id=row_id, path=path, line=rec.line,
                                 question_field=fmap.question, answer_field=fmap.answer, answer_type=answer_type,
                                 raw=raw))
        except DataError as err:
            if rec.row is None:
                raise
            raise DataError(err.message, path=path, row=rec.row, field=err.field) from None
    if dropped:
        shown = ", ".join(dropped[:5]) + (", ..." if len(dropped) > 5 else "")
        print(f"nlft: {path}: dropped {len(dropped)} rows whose label is missing or not one of "
              f"{', '.join(fmap.labels or ())} ({shown})", file=sys.stderr)
    return rows


def _csv_records(path: Path, fmap: FieldMap) -> Iterator[Record]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for name in (fmap.question, fmap.answer):
            if "{" not in name and (reader.fieldnames is None or name not in reader.fieldnames):
                raise DataError(f"no column {name!r} (columns: {reader.fieldnames})", path=path, line=1,
                                field=name)
        for raw in reader:
            yield Record(raw, reader.line_num, None)


def _split_name(split: str | None) -> str:
    name = "test" if split in ("heldout", "held-out") else (split or "train")
    if name not in SPLITS:
        raise ValueError(f"a file split by --split-fractions has the parts {', '.join(SPLITS)} (or heldout), "
                         f"not {split!r}")
    return name


def split_rows(rows: list[dict[str, Any]], fractions: tuple[float, ...],
               seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """``rows`` split into ``train``, ``validation`` and ``test`` by ``fractions`` (three numbers >= 0 summing to 1;
    two: train and test), after a shuffle seeded by ``seed``; each part keeps the file's order, and the same rows,
    fractions and seed give the same parts."""
    if len(fractions) == 2:
        fractions = (fractions[0], 0.0, fractions[1])
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions are train,validation,test (or train,test) summing to 1, got {fractions}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_train = round(fractions[0] * len(rows))
    n_val = round(fractions[1] * len(rows))
    parts = {"train": order[:n_train], "validation": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    return {name: [rows[i] for i in sorted(part)] for name, part in parts.items()}


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


def _from_hub(name: str, config: str | None, split: str, qf: str, af: str, limit: int | None,
              id_prefix: str, answer_type: str = "number") -> list[dict[str, Any]]:
    from nlft.utils.models import hub_reachable

    if not os.environ.get("HF_HUB_OFFLINE") and not hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"  # the cache only: no minute of retries before the same error
    from datasets import config as datasets_config
    from datasets import load_dataset
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_OFFLINE") == "1":  # when the libraries were imported before it was set
        constants.HF_HUB_OFFLINE = datasets_config.HF_HUB_OFFLINE = True
    try:
        ds = load_dataset(name, config, split=split)
    except (ConnectionError, OSError, ValueError) as err:  # offline, unknown name or split, no such config
        reason = " ".join(str(err).split())[:200]
        raise DataError(f"cannot load the Hugging Face dataset ({reason}); offline, download it once online or "
                        "give a local file", path=f"hf:{name}" + (f":{config}" if config else "")) from None
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
    entries = generate_entries(task, options or {}, size=size, seed=gym_split_seed(task, split, seed))
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
