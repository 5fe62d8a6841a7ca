"""The study's data, per task: a pool of training questions with the base model's outputs (generated, graded and
judged once), validation and held-out questions apart from it, and the seeded draws that each cell trains on.

Task specs are those of ``nlft prepare --dataset`` (``chain_sum:...``, ``basic_arithmetic``, ``rg:NAME``), plus
two forms built from a reasoning-gym generator whose answers are short words:

- ``choice-of:NAME``: the generator's question as a multiple-choice question with four options, its answer and
  three other answers of the same generator (drawn from 500 of its entries, seeded by the row id), graded as a
  letter by the ``choice`` task;
- ``text-of:NAME``: the generator's question with its answer graded by the ``text`` task (normalised match)
  rather than by the generator's own scorer.

Layout of ``<study>/<task>/data/``::

    prompt.txt      the task's brief prompt: generation, training (X_base) and evaluation
    pool.jsonl      pool_size training questions (split train)
    val.jsonl       validation questions: settings and checkpoints are chosen on these
    heldout.jsonl   held-out questions, reported only (split test; no question text shared with another file)
    prepare/        the base model's outputs for the pool, graded and judged (``nlft prepare``)
    draws/n<N>-s<seed>.jsonl   the N records a size-N cell of seed ``seed`` trains on

A task's questions and prepared records are also kept in one file, ``task-data/<task>.json.gz`` of the study
directory (:func:`export_task_data`), committed with the cells: another machine or library version may generate
other questions for the same ids (reasoning-gym's generators change between releases) or other greedy outputs
(float rounding flips near-ties), so ``nlft study --data-from DIR`` unpacks those files
(:func:`import_task_data`) instead of generating, and its cells train on the very records of the committed ones.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from nlft.study.config import StudyConfig, slug
from nlft.utils.files import DataError, atomic_write_gzip, atomic_write_jsonl, read_jsonl

DERIVED = ("choice-of:", "text-of:")


def _log(msg: str) -> None:
    print(f"[study {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _strip_instruction(question: str) -> str:
    """The question without a last sentence that says how to answer ("Respond only with ..."): the options follow."""
    lines = question.strip().split("\n")
    parts = re.split(r"(?<=[.?])\s+", lines[-1])
    if len(parts) > 1 and re.search(r"\b(respond|provide|reply|answer|give)\b", parts[-1], re.I):
        lines[-1] = " ".join(parts[:-1])
    return "\n".join(lines).strip()


def derived_rows(spec: str, split: str, limit: int, seed: int = 0) -> list[dict[str, Any]]:
    """Rows of a ``choice-of:NAME`` or ``text-of:NAME`` task (module docstring), in the layout of
    :mod:`nlft.tasks.base`."""
    from nlft.tasks.gym import generate_entries, split_seed
    from nlft.tasks.registry import get_task

    form, name = spec.split(":", 1)
    entries = generate_entries(name, {}, size=limit, seed=split_seed(name, split, seed))
    pool = generate_entries(name, {}, size=500, seed=split_seed(name, "pool", 0))
    vocabulary = sorted({str(e["answer"]).strip() for e in pool})
    rows = []
    for i, entry in enumerate(entries):
        gold = str(entry["answer"]).strip()
        row_id = f"{form.removesuffix('-of')}-{name}-{split}-{seed}-{i}"
        if form == "choice-of":
            rng = random.Random(row_id)
            others = [v for v in vocabulary if v.lower() != gold.lower()]
            if len(others) < 3:
                raise DataError(f"{name} has fewer than 4 distinct answers: it cannot make a multiple-choice question",
                                path=spec)
            options = [*rng.sample(others, 3), gold]
            rng.shuffle(options)
            rows.append(get_task("choice").make_row(_strip_instruction(entry["question"]), gold, row_id=row_id,
                                                    path=spec, line=i + 1, raw={"choices": options}))
        else:
            rows.append(get_task("text").make_row(entry["question"].strip(), gold, row_id=row_id, path=spec,
                                                  line=i + 1))
    return rows


def task_questions(spec: str, split: str, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` questions of ``spec``'s ``split`` (seed 0)."""
    if spec.startswith(DERIVED):
        return derived_rows(spec, split, limit)
    from nlft.tasks.sources import load_questions

    return load_questions(spec, split=split, limit=limit)


def task_of_spec(spec: str) -> Any:
    """The :class:`~nlft.tasks.base.Task` of a study task spec."""
    from nlft.tasks.registry import dataset_task, get_task

    if spec.startswith("choice-of:"):
        return get_task("choice")
    if spec.startswith("text-of:"):
        return get_task("text")
    return dataset_task(spec)


def data_dir(root: Path, task: str) -> Path:
    return root / slug(task) / "data"


def build_task_data(root: Path, cfg: StudyConfig, task: str) -> Path:
    """Questions, the base model's outputs for the pool and the prompt of ``task`` (each cached); returns the
    data folder."""
    data = data_dir(root, task)
    data.mkdir(parents=True, exist_ok=True)
    the_task = task_of_spec(task)
    if not (data / "prompt.txt").exists():
        (data / "prompt.txt").write_text(the_task.template(cfg.prompt), encoding="utf-8")
    if not (data / "heldout.jsonl").exists():
        pool = task_questions(task, "train", cfg.pool_size)
        if len(pool) < cfg.pool_size:
            raise DataError(f"only {len(pool)} training questions, {cfg.pool_size} needed", path=task)
        seen = {r["question"].strip() for r in pool}
        want = cfg.eval_size + cfg.val_size
        unique: dict[str, dict[str, Any]] = {}
        for row in task_questions(task, "test", want * 2):
            if row["question"].strip() not in seen:
                unique.setdefault(row["question"].strip(), row)
        rest = list(unique.values())
        if len(rest) < want:
            raise DataError(f"only {len(rest)} held-out and validation questions apart from the pool, {want} needed",
                            path=task)
        from nlft.tasks.sources import file_row

        atomic_write_jsonl(data / "pool.jsonl", [file_row(r) for r in pool])
        atomic_write_jsonl(data / "val.jsonl", [file_row(r) for r in rest[cfg.eval_size:want]])
        atomic_write_jsonl(data / "heldout.jsonl", [file_row(r) for r in rest[:cfg.eval_size]])
    if not (data / "prepare" / "summary.json").exists():
        from nlft.data.build import (
            BackendSpec,
            JudgeSpec,
            SamplingSpec,
            TemplateSpec,
            format_summary,
            prepare,
            rule_kind,
        )
        from nlft.tasks.sources import load_questions

        _log(f"{slug(task)}: outputs of {cfg.model} for the {cfg.pool_size} pool questions, graded ({cfg.grading}) "
             "and judged")
        result = prepare(load_questions(str(data / "pool.jsonl")), data / "prepare",
                         backend=BackendSpec(model=cfg.model),
                         sampling=SamplingSpec(max_new_tokens=cfg.gen_max_new_tokens, batch_size=32),
                         template=TemplateSpec.from_file(str(data / "prompt.txt")),
                         judge=JudgeSpec(kind=rule_kind(the_task), batch_size=32, grading=cfg.grading), progress=False)
        _log(f"{slug(task)}: " + format_summary(result.summary).replace("\n", "; "))
    return data


def pool_records(root: Path, task: str) -> list[dict[str, Any]]:
    """The pool's prepared records with a non-empty output (an empty one has no token to weigh)."""
    return [r for r in read_jsonl(data_dir(root, task) / "prepare" / "nlft.jsonl") if r["output"].strip()]


def draw(root: Path, task: str, n: int, seed: int) -> Path:
    """The training file of a size-``n`` cell of seed ``seed``: ``n`` pool records drawn with a generator seeded by
    the task, ``n`` and ``seed`` (kept in pool order), written once."""
    path = data_dir(root, task) / "draws" / f"n{n}-s{seed}.jsonl"
    if not path.exists():
        records = pool_records(root, task)
        if len(records) < n:
            raise DataError(f"only {len(records)} usable pool records, {n} needed", path=task)
        chosen = sorted(random.Random(f"{slug(task)}|{n}|{seed}").sample(range(len(records)), n))
        atomic_write_jsonl(path, [records[i] for i in chosen])
    return path


def records_sha(rows: list[dict[str, Any]]) -> str:
    """sha256 of the whole records ``rows`` (question, reference, output, grade, judgment, ...), whatever their order
    (``train_records_sha``: two cells with the same question ids differ here when the questions or the model's
    outputs differed, e.g. another reasoning-gym release or another machine's float rounding)."""
    lines = sorted(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in rows)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def ids_sha(rows: list[dict[str, Any]]) -> str:
    """sha256 of the sorted question ids of ``rows`` (``train_ids_sha``: equal only for the same training questions)."""
    ids = sorted(str(r.get("question_id", r["id"])) for r in rows)
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


TASK_DATA = "task-data"
# what a task's data file holds: its data folder's files (``prompt.txt`` as text, the others as JSON lines)
_BUNDLED = ("prompt.txt", "pool.jsonl", "val.jsonl", "heldout.jsonl", "prepare/nlft.jsonl", "prepare/summary.json")
# the settings that make a task's data: an import must be made with the same ones
DATA_SETTINGS = ("model", "prompt", "pool_size", "eval_size", "val_size", "gen_max_new_tokens", "grading")


def _read_bundled(data: Path) -> dict[str, Any]:
    bundle: dict[str, Any] = {}
    for name in _BUNDLED:
        path = data / name
        if not path.exists():
            raise DataError(f"no {name}: the task's data is not complete", path=str(data))
        if name.endswith(".jsonl"):
            bundle[name] = read_jsonl(path)
        elif name.endswith(".json"):
            bundle[name] = json.loads(path.read_text(encoding="utf-8"))
            bundle[name].pop("nlft_file", None)  # a path of the machine that made it
        else:
            bundle[name] = path.read_text(encoding="utf-8")
    return bundle


def export_task_data(root: Path, task: str) -> Path | None:
    """Write ``root/task-data/<slug>.json.gz``: the task's questions and prepared pool records, one JSON object
    ``{file name: text or rows}`` (the same bytes for the same data). None when the task's data is not built."""
    data = data_dir(root, task)
    if not (data / "prepare" / "summary.json").exists():
        return None
    text = json.dumps(_read_bundled(data), sort_keys=True, ensure_ascii=False)
    out = root / TASK_DATA / f"{slug(task)}.json.gz"
    atomic_write_gzip(out, text)
    return out


def import_task_data(source: Path, root: Path, task: str, cfg: StudyConfig | None = None) -> bool:
    """Unpack ``source/task-data/<slug>.json.gz`` as ``root``'s data folder of ``task``, so that
    :func:`build_task_data` finds it built; False when ``source`` has no such file.

    Refused (:class:`DataError`) when ``cfg`` differs from ``source/study.json`` in a setting that makes the data
    (:data:`DATA_SETTINGS`), when the data folder already holds other questions or records, and when it holds a
    partly built task (nothing is overwritten). The folder appears whole or not at all.
    """
    source = Path(source)
    path = source / TASK_DATA / f"{slug(task)}.json.gz"
    if not path.exists():
        return False
    if cfg is not None and (source / "study.json").exists():
        made = json.loads((source / "study.json").read_text(encoding="utf-8"))
        differ = [k for k in DATA_SETTINGS if k in made and made[k] != getattr(cfg, k)]
        if differ:
            what = ", ".join(f"{k} {made[k]!r}, not {getattr(cfg, k)!r}" for k in differ)
            raise DataError(f"made with other settings: {what}", path=str(source / "study.json"))
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        bundle = json.load(fh)
    missing = [name for name in _BUNDLED if name not in bundle]
    if missing:
        raise DataError(f"no {', '.join(missing)} in it", path=str(path))
    data = data_dir(root, task)
    if (data / "prepare" / "summary.json").exists():
        here = _read_bundled(data)
        other = [name for name in _BUNDLED if name != "prepare/summary.json" and here[name] != bundle[name]]
        if other:
            raise DataError(f"already holds other {', '.join(other)} than {path}: use another --out, or remove the "
                            "folder to take the imported data", path=str(data))
        return True
    if data.exists():
        raise DataError(f"a partly built task's data (no prepare/summary.json): remove it to import {path}",
                        path=str(data))
    tmp = data.with_name(data.name + ".import")
    if tmp.exists():
        shutil.rmtree(tmp)  # an import cut short: only ever written here
    (tmp / "prepare").mkdir(parents=True)
    for name in _BUNDLED:
        value = bundle[name]
        if name.endswith(".jsonl"):
            atomic_write_jsonl(tmp / name, value)
        elif name.endswith(".json"):
            (tmp / name).write_text(json.dumps(value, indent=2), encoding="utf-8")
        else:
            (tmp / name).write_text(value, encoding="utf-8")
    tmp.replace(data)
    _log(f"{slug(task)}: questions and the pool's records from {path}")
    return True
